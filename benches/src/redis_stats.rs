//! Counting what Redis did: `INFO stats` counters before and after a probe.
//!
//! `total_reads_processed` counts the reads the server made from its clients' sockets: with one
//! request in flight at a time, that is the number of round trips. `total_commands_processed`
//! counts commands, including the ones a Lua script calls. Both are server-wide, so the counts
//! are exact only when nothing else talks to the server (use a private `redis-server`); the
//! cost of the `INFO` calls themselves is measured and subtracted.

use crate::Result;

/// The counters of one `INFO stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `total_commands_processed`.
    pub commands: u64,
    /// `total_reads_processed`.
    pub reads: u64,
}

/// A connection for reading the counters.
pub struct RedisStats {
    conn: redis::aio::MultiplexedConnection,
    overhead: Counters,
}

fn field(info: &str, name: &str) -> Result<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .ok_or_else(|| format!("INFO stats has no {name}"))?
        .trim()
        .parse()
        .map_err(Into::into)
}

impl RedisStats {
    /// Connects to `url` and measures what two back-to-back snapshots cost.
    pub async fn open(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        let mut s = RedisStats {
            conn,
            overhead: Counters::default(),
        };
        // the cheapest of a few tries: other clients can only add to it
        let mut best: Option<Counters> = None;
        for _ in 0..5 {
            let a = s.snapshot().await?;
            let b = s.snapshot().await?;
            let d = Counters {
                commands: b.commands - a.commands,
                reads: b.reads - a.reads,
            };
            best = Some(match best {
                Some(x) if x.commands + x.reads <= d.commands + d.reads => x,
                _ => d,
            });
        }
        s.overhead = best.unwrap_or_default();
        Ok(s)
    }

    /// The counters now.
    pub async fn snapshot(&mut self) -> Result<Counters> {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut self.conn)
            .await?;
        Ok(Counters {
            commands: field(&info, "total_commands_processed")?,
            reads: field(&info, "total_reads_processed")?,
        })
    }

    /// What happened between `before` and `after`, less the snapshots' own cost.
    pub fn delta(&self, before: Counters, after: Counters) -> Counters {
        Counters {
            commands: after
                .commands
                .saturating_sub(before.commands)
                .saturating_sub(self.overhead.commands),
            reads: after
                .reads
                .saturating_sub(before.reads)
                .saturating_sub(self.overhead.reads),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_info_fields() {
        let info = "# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:42\r\ntotal_reads_processed:7\r\n";
        assert_eq!(field(info, "total_commands_processed").expect("field"), 42);
        assert_eq!(field(info, "total_reads_processed").expect("field"), 7);
        assert!(field(info, "nope").is_err());
    }
}
