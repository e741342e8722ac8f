//! Leadership transfer (dissertation §3.10): catch the target up, then TimeoutNow; resume if it
//! does not take over in time.

use super::*;

#[test]
fn a_lagging_target_is_told_to_campaign_only_once_caught_up() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    for k in 0..5u8 {
        let now = net.now;
        net.nodes
            .get_mut(&n(1))
            .unwrap()
            .propose(vec![k], now)
            .unwrap();
        net.deliver();
    }
    net.heal();
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    assert_eq!(leader.transfer_leadership(Some(n(3)), now), Ok(n(3)));
    // At once: no lease, no proposals.
    assert!(!leader.status(now).writable);
    assert!(matches!(
        leader.propose(vec![9], now),
        Err(ProposeError::Transferring { .. })
    ));
    let leader_last = leader.status(now).last_index;
    // The next heartbeat round finds n3 behind: the leader repairs its log first.
    let now = now + HEARTBEAT_MS * MS;
    net.now = now;
    net.nodes.get_mut(&n(1)).unwrap().tick(now);
    let mut timeout_now_seen_caught_up = None;
    net.deliver_checking(|net| {
        let (_, last) = net.delivered.last().unwrap();
        if last.body.is_timeout_now() && timeout_now_seen_caught_up.is_none() {
            timeout_now_seen_caught_up = Some(net.status(3).last_index == leader_last);
        }
    });
    assert_eq!(
        timeout_now_seen_caught_up,
        Some(true),
        "TimeoutNow only once n3 caught up"
    );
    assert_eq!(net.leaders(), vec![n(3)]);
    assert_eq!(net.status(3).term, t(2));
}

#[test]
fn the_cause_of_a_transfer_reaches_the_target_and_only_for_the_term_it_won() {
    let mut net = Network::new(3);
    net.elect(1);
    let now = net.now;
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    assert_eq!(leader.transfer_leadership_for(Some(n(2)), 7, now), Ok(n(2)));
    net.deliver();
    assert_eq!(net.leaders(), vec![n(2)]);
    let won = net.nodes[&n(2)].transfer_campaign();
    assert_eq!(
        won,
        Some(TransferCampaign {
            term: t(2),
            from: n(1),
            cause: 7
        })
    );
    assert_eq!(net.nodes[&n(1)].transfer_campaign(), None);
    // A plain election later: the hand-over no longer describes the term.
    net.elect(3);
    assert_eq!(net.nodes[&n(3)].transfer_campaign(), None);
    assert_eq!(net.nodes[&n(2)].transfer_campaign(), None);
}

#[test]
fn an_abandoned_transfer_resumes_the_old_leader() {
    let mut net = Network::new(3);
    net.elect(1);
    net.isolate(3);
    let now = net.now;
    net.nodes
        .get_mut(&n(1))
        .unwrap()
        .transfer_leadership(Some(n(3)), now)
        .unwrap();
    net.deliver();
    // n3 never catches up; after a minimum election timeout the leader takes proposals again.
    assert!(!net.status(1).writable);
    net.run_ms(ELECTION_MS + 1);
    let now = net.now;
    assert_eq!(net.status(1).role, Role::Leader);
    let leader = net.nodes.get_mut(&n(1)).unwrap();
    assert!(leader.propose(vec![1], now).is_ok());
    net.deliver();
    net.now += HEARTBEAT_MS * MS;
    net.tick(&[1]);
    assert!(
        net.status(1).writable,
        "the lease comes back with new rounds"
    );
}
