//! Counters, gauges and latency histograms (the commit, and each stage of an operation's way to its subscribers), rendered at `GET /metrics` in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use codecollab_protocol::wire::ErrorCode;

/// Every refusal reason, so each has a series even at zero.
pub const ERROR_CODES: &[(ErrorCode, &str)] = &[
    (ErrorCode::Malformed, "malformed"),
    (ErrorCode::UnsupportedVersion, "unsupported_version"),
    (ErrorCode::FrameTooLarge, "frame_too_large"),
    (ErrorCode::Unauthorized, "unauthorized"),
    (ErrorCode::Forbidden, "forbidden"),
    (ErrorCode::BaseLengthMismatch, "base_length_mismatch"),
    (ErrorCode::FutureRevision, "future_revision"),
    (ErrorCode::ResyncNeeded, "resync_needed"),
    (ErrorCode::UnknownDocument, "unknown_document"),
    (ErrorCode::InvalidPath, "invalid_path"),
    (ErrorCode::RateLimited, "rate_limited"),
    (ErrorCode::DocumentTooLarge, "document_too_large"),
    (ErrorCode::LimitReached, "limit_reached"),
    (ErrorCode::ProtocolViolation, "protocol_violation"),
    (ErrorCode::StorageFailure, "storage_failure"),
];

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] =
    [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 14],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub connections: AtomicI64,
    /// Clients this node relays to the node that serves their session, and the messages relayed either way.
    pub relayed_connections: AtomicI64,
    pub relayed_messages: AtomicU64,
    pub sessions: AtomicI64,
    pub documents: AtomicI64,
    pub ops_committed: AtomicU64,
    /// Commits of document batches; `ops_committed` divided by this is the average group size.
    pub document_commits: AtomicU64,
    /// Batches that waited for prompt clients' operations (adaptive group commit, `crate::pace`), and those
    /// waits that ran out because a prompt client did not send.
    pub commit_waits: AtomicU64,
    pub commit_waits_expired: AtomicU64,
    /// Commits run by the asking task on its own thread, the store being idle (`crate::store::writer`).
    pub commits_inline: AtomicU64,
    /// Resuming clients replayed from memory, from the store (their revision had left memory), or sent a
    /// snapshot (it had left the store's retention too: they merge three ways).
    pub replays_from_memory: AtomicU64,
    pub replays_from_store: AtomicU64,
    pub snapshot_resyncs: AtomicU64,
    /// Operations numbered below their client's last committed one: old frames of dropped connections, dropped.
    pub stale_ops: AtomicU64,
    /// Document batches whose commit failed (rolled back; their authors were told to send again).
    pub commit_failures: AtomicU64,
    /// Documents this node came to sequence (several nodes on PostgreSQL: a lease taken, new or from a node that
    /// stopped renewing it), and those another node took over from this one.
    pub leases_taken: AtomicU64,
    /// Leases this node holds now, on documents and sessions.
    pub leases_held: AtomicI64,
    pub leases_lost: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub commit_latency: Histogram,
    /// The stages of an operation's way through the server, for finding where fan-out latency goes.
    pub op_queue: Histogram,
    pub op_broadcast: Histogram,
    pub outbox_wait: Histogram,
    pub socket_write: Histogram,
    refusals: [AtomicU64; 15],
}

impl Metrics {
    pub fn refused(&self, code: ErrorCode) {
        if let Some(i) = ERROR_CODES.iter().position(|(c, _)| *c == code) {
            self.refusals[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges = [
            ("codecollab_connections", "Open WebSocket connections.", &self.connections),
            ("codecollab_sessions", "Sessions loaded in memory.", &self.sessions),
            ("codecollab_documents", "Documents loaded in memory.", &self.documents),
            (
                "codecollab_leases_held",
                "Documents and sessions this node holds a lease on (a cluster on PostgreSQL).",
                &self.leases_held,
            ),
            (
                "codecollab_relayed_connections",
                "Clients relayed to the node that serves their session (a cluster on PostgreSQL).",
                &self.relayed_connections,
            ),
        ];
        for (name, help, value) in gauges {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", value.load(Ordering::Relaxed));
        }
        let counters = [
            ("codecollab_ops_committed_total", "Operations committed durably.", &self.ops_committed),
            (
                "codecollab_document_commits_total",
                "Batches of operations committed (group commit).",
                &self.document_commits,
            ),
            (
                "codecollab_commit_waits_total",
                "Batches that waited for the next operations of clients that answer at once.",
                &self.commit_waits,
            ),
            (
                "codecollab_commit_waits_expired_total",
                "Waits for such operations that ran out (the client stopped being waited for).",
                &self.commit_waits_expired,
            ),
            (
                "codecollab_commits_inline_total",
                "Commits that found the store idle and ran on the asking task's thread instead of the store thread.",
                &self.commits_inline,
            ),
            (
                "codecollab_replays_from_memory_total",
                "Resuming clients replayed what they missed from the history in memory.",
                &self.replays_from_memory,
            ),
            (
                "codecollab_replays_from_store_total",
                "Resuming clients replayed what they missed from the operations kept in the store.",
                &self.replays_from_store,
            ),
            (
                "codecollab_snapshot_resyncs_total",
                "Resuming clients sent a snapshot: what they missed had left the store's retention.",
                &self.snapshot_resyncs,
            ),
            (
                "codecollab_stale_ops_total",
                "Old frames of dropped connections (an operation numbered below its client's last), dropped.",
                &self.stale_ops,
            ),
            (
                "codecollab_commit_failures_total",
                "Document batches the store could not commit (rolled back, authors told to send again).",
                &self.commit_failures,
            ),
            (
                "codecollab_leases_taken_total",
                "Documents this node took to sequence (the store's lease on them, new or taken over).",
                &self.leases_taken,
            ),
            (
                "codecollab_leases_lost_total",
                "Documents another node took over from this one (found at a commit or a lease renewal).",
                &self.leases_lost,
            ),
            (
                "codecollab_relayed_messages_total",
                "Messages relayed between clients and the node that serves their session, either way.",
                &self.relayed_messages,
            ),
            ("codecollab_bytes_in_total", "WebSocket payload bytes received.", &self.bytes_in),
            ("codecollab_bytes_out_total", "WebSocket payload bytes sent.", &self.bytes_out),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let histograms = [
            (&self.commit_latency, "codecollab_commit_latency_seconds", "Time to commit one batch of writes to the store."),
            (
                &self.op_queue,
                "codecollab_op_queue_seconds",
                "Time from reading an operation off its socket to its document task taking it.",
            ),
            (
                &self.op_broadcast,
                "codecollab_op_broadcast_seconds",
                "Time from reading an operation off its socket to its acknowledgement and broadcast being queued for every subscriber (queue, batch, commit, encoding).",
            ),
            (
                &self.outbox_wait,
                "codecollab_outbox_wait_seconds",
                "Time a frame waits in its connection's queue before the connection starts writing it.",
            ),
            (
                &self.socket_write,
                "codecollab_socket_write_seconds",
                "Time to write one batch of queued frames to a socket and flush it.",
            ),
        ];
        for (histogram, name, help) in histograms {
            histogram.render(name, help, &mut out);
        }
        let name = "codecollab_refusals_total";
        let _ = writeln!(out, "# HELP {name} Requests refused, by reason.\n# TYPE {name} counter");
        for ((_, label), value) in ERROR_CODES.iter().zip(&self.refusals) {
            let _ = writeln!(out, "{name}{{reason=\"{label}\"}} {}", value.load(Ordering::Relaxed));
        }
        out
    }
}
