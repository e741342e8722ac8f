//! placeholder: certificates and identities.
