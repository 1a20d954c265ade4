//! Redis key and stream names. The stream names and the consumer group are a
//! contract (DESIGN §2, §3): tools outside this repository use them verbatim.

/// Consumer group every Herald instance reads the queue with.
pub const GROUP: &str = "herald";
/// Outcome events, one entry per state change (DESIGN §3).
pub const EVENTS: &str = "herald:events";
/// Entries that could not be decoded, whole, with the reason.
pub const DLQ: &str = "herald:dlq";
/// Deferred messages, scored by due time (ms epoch).
pub const DELAYED: &str = "herald:delayed";
/// Prefix of a message's state hash: `herald:msg:<tenant>:<id>`. Tenants
/// cannot contain `:` (validated at ingest), so the key is unambiguous.
pub const MSG_PREFIX: &str = "herald:msg:";
/// Prefix of a message's decision trail list.
pub const TRAIL_PREFIX: &str = "herald:trail:";

/// `herald:q:{n}` — the braces are literal (a Redis Cluster hash tag).
pub fn queue(partition: u16) -> String {
    format!("herald:q:{{{partition}}}")
}

/// Message state hash key.
pub fn message(tenant: &str, id: &str) -> String {
    let mut k = String::with_capacity(MSG_PREFIX.len() + tenant.len() + id.len() + 1);
    message_into(&mut k, tenant, id);
    k
}

/// Write the message state hash key into `buf` (cleared first): the hot
/// path reuses one buffer per batch, since a command copies its arguments.
pub fn message_into(buf: &mut String, tenant: &str, id: &str) {
    buf.clear();
    buf.push_str(MSG_PREFIX);
    buf.push_str(tenant);
    buf.push(':');
    buf.push_str(id);
}

/// Decision trail list key.
pub fn trail(tenant: &str, id: &str) -> String {
    let mut k = String::with_capacity(TRAIL_PREFIX.len() + tenant.len() + id.len() + 1);
    k.push_str(TRAIL_PREFIX);
    k.push_str(tenant);
    k.push(':');
    k.push_str(id);
    k
}

/// Partition for a recipient: FNV-1a 64 over the E.164 text, so one
/// recipient's messages stay in order. The loadtest producer uses the same
/// function; any producer may choose any partition (DESIGN §2).
pub fn partition_for(to_e164: &str, partitions: u16) -> u16 {
    (fnv1a(&[to_e164.as_bytes()]) % u64::from(partitions.max(1))) as u16
}

/// FNV-1a 64 over the concatenation of `parts`: a stable hash (the same in
/// every process and release), for partitions and per-message offsets.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names() {
        assert_eq!(queue(0), "herald:q:{0}");
        assert_eq!(queue(7), "herald:q:{7}");
        assert_eq!(message("acme", "x:1"), "herald:msg:acme:x:1");
        assert_eq!(trail("acme", "x:1"), "herald:trail:acme:x:1");
        let mut buf = String::from("stale");
        message_into(&mut buf, "t", "i");
        assert_eq!(buf, "herald:msg:t:i");
    }

    #[test]
    fn fnv1a_known_vectors() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(
            partition_for("a", u16::MAX),
            (0xaf63dc4c8601ec8c_u64 % 65535) as u16
        );
        assert_eq!(partition_for("+14155552671", 1), 0);
    }
}
