//! The `election:` section (who may lead: this node's role and priority) and the roles
//! the `members` list may declare for the other nodes, so that `check-config` can refuse a
//! cluster in which no voter may lead.

use super::{DaemonConfig, Member};
use regent_replica::{Candidacy, ElectionRole, ElectionSettings, DEFAULT_PRIORITY};
use serde::{Deserialize, Serialize};

/// The longest `election.hold_down_ms`: a day.
pub const HOLD_DOWN_MS_MAX: u64 = 24 * 3600 * 1000;
/// `election.hold_down_ms` when not given.
pub const HOLD_DOWN_MS_DEFAULT: u64 = 10_000;

/// A role, as the file names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// May lead.
    #[default]
    Candidate,
    /// Votes, never leads (Patroni's `nofailover`).
    Nofailover,
    /// Votes, never leads, and has no master beside it.
    Witness,
}

impl RoleName {
    pub fn role(self) -> ElectionRole {
        match self {
            RoleName::Candidate => ElectionRole::Candidate,
            RoleName::Nofailover => ElectionRole::NoFailover,
            RoleName::Witness => ElectionRole::Witness,
        }
    }
}

/// The `election:` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectionConfig {
    #[serde(default)]
    pub role: RoleName,
    /// Higher campaigns first; with `prefer_priority`, takes leadership over.
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// While leading for `hold_down_ms`, hand over to a caught-up, healthy voter of higher
    /// priority.
    #[serde(default)]
    pub prefer_priority: bool,
    #[serde(default = "default_hold_down_ms")]
    pub hold_down_ms: u64,
}

fn default_priority() -> u32 {
    DEFAULT_PRIORITY
}

fn default_hold_down_ms() -> u64 {
    HOLD_DOWN_MS_DEFAULT
}

impl Default for ElectionConfig {
    fn default() -> ElectionConfig {
        ElectionConfig {
            role: RoleName::Candidate,
            priority: DEFAULT_PRIORITY,
            prefer_priority: false,
            hold_down_ms: HOLD_DOWN_MS_DEFAULT,
        }
    }
}

impl ElectionConfig {
    /// The replica's settings.
    pub fn settings(&self) -> ElectionSettings {
        ElectionSettings {
            own: self.candidacy(),
            prefer_priority: self.prefer_priority,
            hold_down_ns: self.hold_down_ms.saturating_mul(1_000_000),
        }
    }

    pub fn candidacy(&self) -> Candidacy {
        Candidacy {
            role: self.role.role(),
            priority: self.priority,
        }
    }
}

/// What a `members` entry may declare of that node's `election:` section (its own file is
/// what counts at run time; this is what `check-config` assumes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberElection {
    #[serde(default)]
    pub role: RoleName,
    #[serde(default = "default_priority")]
    pub priority: u32,
}

impl MemberElection {
    pub fn candidacy(&self) -> Candidacy {
        Candidacy {
            role: self.role.role(),
            priority: self.priority,
        }
    }
}

impl DaemonConfig {
    /// The rules of `election:`: a witness has no host (no probe, hooks, fencing or VIP),
    /// the members list agrees with this node's own section, and some initial voter may lead.
    pub(super) fn validate_election(&self) -> Result<(), (String, String)> {
        let e = &self.election;
        let field = |f: &str| format!("election.{f}");
        if e.hold_down_ms < self.timing.election_timeout_min_ms || e.hold_down_ms > HOLD_DOWN_MS_MAX
        {
            return Err((
                field("hold_down_ms"),
                format!(
                    "{} ms: must be within timing.election_timeout_min_ms ({} ms) and {HOLD_DOWN_MS_MAX} ms",
                    e.hold_down_ms, self.timing.election_timeout_min_ms
                ),
            ));
        }
        if e.role == RoleName::Witness {
            let host_parts = [
                ("host_health", self.host_health.is_some()),
                ("hooks", self.hooks.any()),
                ("fencing.methods", !self.fencing.methods.is_empty()),
                ("vip", self.vip.is_some()),
            ];
            if let Some((name, _)) = host_parts.iter().find(|(_, set)| *set) {
                return Err((
                    field("role"),
                    format!(
                        "a witness has no master beside it and never leads: remove `{name}` \
                         (or make this node a candidate or nofailover)"
                    ),
                ));
            }
        }
        for (i, member) in self.members.iter().enumerate() {
            if member.id != self.node_id {
                continue;
            }
            if let Some(declared) = member.election {
                if declared.candidacy() != e.candidacy() {
                    return Err((
                        format!("members[{i}].election"),
                        format!(
                            "declares this node {} with priority {}, but its own election \
                             section says {} with priority {}",
                            declared.candidacy().role,
                            declared.priority,
                            e.role.role(),
                            e.priority
                        ),
                    ));
                }
            }
        }
        if !self.join && !self.members.iter().any(|m| self.may_lead(m)) {
            return Err((
                "election.role".to_string(),
                format!(
                    "no voter may lead: this node is {} and every other member is declared \
                     nofailover or witness (members[].election); at least one must be a candidate",
                    e.role.role()
                ),
            ));
        }
        Ok(())
    }

    /// Whether `member` may lead, as this file sees it: this node by its `election:`
    /// section, the others by their declared `members[].election` (a candidate if none).
    fn may_lead(&self, member: &Member) -> bool {
        if member.id == self.node_id {
            return self.election.role.role().may_lead();
        }
        member
            .election
            .is_none_or(|declared| declared.role.role().may_lead())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = "members:\n  - { id: 1, address: 127.0.0.1:7401 }\n  - { id: 2, address: 127.0.0.1:7402 }\n  - { id: 3, address: 127.0.0.1:7403 }\n";

    fn parse(extra: &str) -> Result<DaemonConfig, serde_yaml::Error> {
        let members = if extra.contains("members:") {
            ""
        } else {
            THREE
        };
        let yaml = format!(
            "cluster: c\nnode_id: 1\nlisten: 127.0.0.1:7401\ntls: {{ cert: n.pem, key: n.key, ca_bundle: ca.pem }}\n{members}{extra}\n"
        );
        serde_yaml::from_str(&yaml)
    }

    fn config(extra: &str) -> DaemonConfig {
        parse(extra).expect("a configuration")
    }

    fn refusal(c: &DaemonConfig) -> String {
        let (field, reason) = c.validate_election().unwrap_err();
        format!("{field}: {reason}")
    }

    #[test]
    fn roles_parse_and_default_to_a_candidate_of_priority_1() {
        let c = config("");
        assert_eq!(c.election, ElectionConfig::default());
        assert_eq!(c.election.settings().own, Candidacy::default());
        c.validate_election().unwrap();
        let c = config("election: {role: witness, priority: 4, prefer_priority: true}");
        assert_eq!(c.election.candidacy().role, ElectionRole::Witness);
        assert_eq!(c.election.candidacy().priority, 4);
        assert!(c.election.settings().prefer_priority);
        c.validate_election().unwrap();
        let err = parse("election: {role: leader}").unwrap_err().to_string();
        assert!(
            err.contains("election.role") && err.contains("nofailover"),
            "{err}"
        );
    }

    #[test]
    fn a_witness_refuses_what_only_a_master_needs() {
        let c = config("election: {role: witness}\nhost_health: {tcp: 127.0.0.1:1}");
        let text = refusal(&c);
        assert!(
            text.starts_with("election.role") && text.contains("host_health"),
            "{text}"
        );
        let c = config("election: {role: witness}\nhooks: {on_promote: {exec: [true]}}");
        assert!(refusal(&c).contains("hooks"));
        // A nofailover node may have a master beside it.
        config("election: {role: nofailover}\nhost_health: {tcp: 127.0.0.1:1}")
            .validate_election()
            .unwrap();
    }

    #[test]
    fn a_cluster_in_which_no_voter_may_lead_is_refused() {
        let c = config(
            "election: {role: nofailover}\nmembers:\n  - { id: 1, address: 127.0.0.1:7401 }\n  - { id: 2, address: 127.0.0.1:7402, election: {role: witness} }\n",
        );
        let text = refusal(&c);
        assert!(text.contains("no voter may lead"), "{text}");
        // One candidate left is enough.
        let c = config(
            "election: {role: nofailover}\nmembers:\n  - { id: 1, address: 127.0.0.1:7401 }\n  - { id: 2, address: 127.0.0.1:7402, election: {role: witness} }\n  - { id: 3, address: 127.0.0.1:7403 }\n",
        );
        c.validate_election().unwrap();
        // A lone node that may not lead.
        let c =
            config("election: {role: witness}\nmembers:\n  - { id: 1, address: 127.0.0.1:7401 }\n");
        assert!(refusal(&c).contains("no voter may lead"));
    }

    #[test]
    fn the_members_list_must_agree_with_the_own_section() {
        let c = config(
            "members:\n  - { id: 1, address: 127.0.0.1:7401, election: {role: nofailover} }\n  - { id: 2, address: 127.0.0.1:7402 }\n",
        );
        let text = refusal(&c);
        assert!(text.starts_with("members[0].election"), "{text}");
    }

    #[test]
    fn the_hold_down_is_bounded() {
        let c = config("election: {prefer_priority: true, hold_down_ms: 10}");
        assert!(refusal(&c).starts_with("election.hold_down_ms"));
        let c = config(&format!(
            "election: {{hold_down_ms: {}}}",
            HOLD_DOWN_MS_MAX + 1
        ));
        assert!(refusal(&c).starts_with("election.hold_down_ms"));
    }
}
