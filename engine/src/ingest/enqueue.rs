//! Putting validated messages on the queue, the way a producer would: each
//! into the partition of its recipient, so one recipient's messages stay in
//! order.

use crate::conn::Conn;
use crate::error::Error;
use crate::keys;
use crate::model::E164;

/// Queue `entries` (recipient, `msg` bytes) in one pipeline. Returns the
/// stream entry ids. On an error some entries may be in Redis already: a
/// retry is safe, since the claim records a re-queued tenant + id as a
/// `duplicate` and never sends it twice.
pub async fn enqueue(
    conn: &mut Conn,
    partitions: u16,
    entries: &[(u64, &[u8])],
) -> Result<Vec<String>, Error> {
    let mut pipe = redis::pipe();
    for (to, bytes) in entries {
        let e164 = E164::render(*to);
        let p = keys::partition_for(e164.as_str(), partitions);
        pipe.cmd("XADD")
            .arg(keys::queue(p))
            .arg("*")
            .arg("msg")
            .arg(*bytes);
    }
    pipe.query_async::<Vec<String>>(conn)
        .await
        .map_err(|e| Error::redis("enqueue", e))
}
