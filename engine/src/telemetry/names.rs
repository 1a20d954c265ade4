//! Every metric name Herald exports, in one place.

pub const MESSAGES: &str = "herald_messages_total";
pub const ENTRIES_READ: &str = "herald_queue_entries_read_total";
pub const AMBIGUOUS: &str = "herald_ambiguous_sends_total";
pub const REDIS_ERRORS: &str = "herald_redis_errors_total";
pub const PROVIDER_LATENCY: &str = "herald_provider_request_seconds";
pub const ENQUEUE_TO_SEND: &str = "herald_enqueue_to_send_seconds";
pub const IN_FLIGHT: &str = "herald_in_flight";
pub const QUEUE_LAG: &str = "herald_queue_lag";
pub const QUEUE_PENDING: &str = "herald_queue_pending";
pub const DELAYED: &str = "herald_delayed_messages";
pub const REDIS_UP: &str = "herald_redis_up";
pub const SEGMENTS: &str = "herald_segments_total";
pub const CONSENT_CHANGES: &str = "herald_consent_changes_applied_total";
pub const CONSENT_NUMBERS: &str = "herald_consent_numbers";
pub const INBOUND: &str = "herald_inbound_replies_total";
pub const POLICY_DEFERRALS: &str = "herald_policy_deferrals_total";
pub const CIRCUIT_STATE: &str = "herald_circuit_state";
pub const FAILOVERS: &str = "herald_failovers_total";
pub const RECEIPTS: &str = "herald_receipts_total";
pub const THROTTLED: &str = "herald_throttled_total";
pub const HTTP_CONNECTIONS: &str = "herald_http_connections";
pub const HTTP_REFUSED: &str = "herald_http_connections_refused_total";
pub const HTTP_TIMEOUTS: &str = "herald_http_timeouts_total";
