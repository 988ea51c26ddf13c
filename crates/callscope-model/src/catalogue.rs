//! The call event catalogue (rendered as `docs/events.md`): every event an agent service emits for its
//! customers, with its category, default level and the data fields it usually carries.
//!
//! Each event is a constant in [`events`], so instrumentation that names an event by
//! its constant fails to compile on a typo. [`CATALOGUE`] lists them all and
//! [`lookup_event`] finds one by code at run time, as the collector does.

use serde::Serialize;

use crate::{Category, Level};

/// How a terminal event ends a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The call ended normally (`completed`, unless the event's `data.status` says otherwise).
    Completed,
    /// The call failed.
    Failed,
    /// The call was canceled before it ran to an end.
    Canceled,
}

impl CallOutcome {
    /// The call status this outcome sets: `completed`, `failed` or `canceled`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Completed => "completed",
            CallOutcome::Failed => "failed",
            CallOutcome::Canceled => "canceled",
        }
    }
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventSpec {
    /// The event code, sent as the OpenTelemetry event name.
    pub code: &'static str,
    /// The category the event belongs to.
    pub category: Category,
    /// The level used when the sender gives none.
    pub level: Level,
    /// What the event means, for people reading a call log.
    pub description: &'static str,
    /// The `data` fields the event usually carries.
    pub fields: &'static [&'static str],
    /// `Some` when the event ends the call.
    pub outcome: Option<CallOutcome>,
}

macro_rules! catalogue {
    ($( $category:ident { $( $code:ident : $level:ident, $outcome:expr, [$($field:literal),*], $desc:literal; )* } )*) => {
        /// Every catalogue event as a constant named by its code.
        pub mod events {
            use super::*;
            $($(
                #[doc = $desc]
                pub const $code: EventSpec = EventSpec {
                    code: stringify!($code),
                    category: Category::$category,
                    level: Level::$level,
                    description: $desc,
                    fields: &[$($field),*],
                    outcome: $outcome,
                };
            )*)*
        }

        /// The whole catalogue, grouped by category.
        pub static CATALOGUE: &[EventSpec] = &[$($(events::$code,)*)*];
    };
}

const T_DONE: Option<CallOutcome> = Some(CallOutcome::Completed);
const T_FAIL: Option<CallOutcome> = Some(CallOutcome::Failed);
const T_CANCEL: Option<CallOutcome> = Some(CallOutcome::Canceled);

catalogue! {
    CallLifecycle {
        CALL_CREATED: Info, None, [], "A call was created through the API (outbound, scheduled).";
        CALL_RECEIVED: Info, None, ["from", "to"], "An inbound call reached the platform.";
        CALL_STARTED: Info, None, ["direction", "from", "to", "campaign_id"], "The call connected.";
        CALL_DISPATCHED: Info, None, [], "The call was handed to a runner for execution.";
        RECORDING_STARTED: Info, None, ["recording_url"], "Recording started.";
        CALL_COMPLETED: Info, T_DONE, ["duration_ms", "ringing_duration_ms", "bot_duration_ms", "billed_duration_ms", "hangup_reason", "hangup_source", "status"], "The call ended.";
        CALL_FAILED: Error, T_FAIL, ["failure_reason", "hangup_reason", "hangup_source"], "The call failed.";
        CALL_CANCELED: Warning, T_CANCEL, [], "The call was canceled.";
        CALL_DEADLINE_EXCEEDED: Error, T_FAIL, [], "The call ran past its deadline.";
        CALL_REJECTED_BY_WEBHOOK: Warning, T_FAIL, ["url", "status_code"], "A webhook rejected the call.";
    }
    User {
        USER_MESSAGE_RECEIVED: Info, None, ["text", "confidence"], "The caller said something.";
        USER_STARTED_SPEAKING: Debug, None, [], "The caller started speaking.";
        USER_STOPPED_SPEAKING: Debug, None, [], "The caller stopped speaking.";
    }
    Agent {
        AGENT_INITIALIZED: Info, None, [], "The voice agent was initialised for the call.";
        GREETING_SENT: Info, None, ["text"], "The agent greeted the caller.";
        AGENT_MESSAGE_SENT: Info, None, ["text"], "The agent said something.";
        AGENT_STARTED_SPEAKING: Debug, None, [], "The agent started speaking.";
        AGENT_ENDED_SPEAKING: Debug, None, [], "The agent stopped speaking.";
        AGENT_INTERRUPTED: Info, None, [], "The caller interrupted the agent.";
        REMINDER_MESSAGE_SENT: Info, None, ["text"], "The agent reminded a silent caller.";
    }
    CallTools {
        TRANSFER_TOOL_INVOKED: Info, None, ["destination"], "The agent started a transfer.";
        TRANSFER_TOOL_COMPLETED: Info, None, [], "The transfer tool finished.";
        TRANSFER_TOOL_FAILED: Error, None, ["failure_reason"], "The transfer tool failed.";
        HANGUP_TOOL_INVOKED: Info, None, [], "The agent decided to hang up.";
        HANGUP_TOOL_COMPLETED: Info, None, [], "The hangup tool finished.";
    }
    IntegrationTools {
        INTEGRATION_TOOL_INVOKED: Info, None, ["tool_name", "tool_type", "request_data"], "An integration tool was called.";
        APPROVAL_REQUESTED: Info, None, [], "A tool call is waiting for approval.";
        APPROVAL_GRANTED: Info, None, [], "A tool call was approved.";
        APPROVAL_DENIED: Warning, None, [], "A tool call was denied.";
        INTEGRATION_TOOL_COMPLETED: Info, None, ["tool_name", "response_data", "latency_ms"], "An integration tool answered.";
        INTEGRATION_TOOL_FAILED: Error, None, ["tool_name", "failure_reason", "latency_ms"], "An integration tool failed.";
        CONTEXT_LOOKUP_COMPLETED: Info, None, ["url", "context_keys", "latency_ms"], "The inbound caller-context look-up answered.";
        CONTEXT_LOOKUP_FAILED: Warning, None, ["failure_reason", "latency_ms"], "The caller-context look-up failed; the call goes on.";
    }
    ConversationalPaths {
        PATH_TRANSITION: Info, None, ["from_node", "to_node"], "The conversation moved to another node.";
        NODE_GENERATION_STARTED: Debug, None, ["node"], "The agent started generating a node's reply.";
        PATH_ERROR: Error, None, ["node", "failure_reason"], "A conversational path failed.";
    }
    Transfer {
        HUMAN_PARTICIPANT_DIALING: Info, None, [], "A human participant is being dialled.";
        HUMAN_PARTICIPANT_ANSWERED: Info, None, [], "The human participant answered.";
        HUMAN_PARTICIPANT_DISCONNECTED: Info, None, [], "The human participant left.";
        TRANSFER_COMPLETED: Info, None, [], "The call was handed to the human.";
    }
    Webhooks {
        WEBHOOK_QUEUED: Debug, None, ["url", "webhook_type"], "A webhook was queued.";
        WEBHOOK_SENT: Info, None, ["url", "attempt"], "A webhook was sent.";
        WEBHOOK_RESPONSE_SUCCESS: Info, None, ["url", "status_code", "latency_ms"], "A webhook was accepted.";
        WEBHOOK_RESPONSE_FAILED: Warning, None, ["url", "status_code", "failure_reason", "latency_ms", "attempt"], "A webhook attempt failed.";
        WEBHOOK_RETRY_EXHAUSTED: Error, None, ["url", "attempts"], "A webhook failed on every attempt.";
    }
    Metrics {
        TURN_LATENCY: Info, None, ["turn", "stt_ms", "llm_ttft_ms", "tts_ttfb_ms", "end_to_end_ms"], "Latency of one conversational turn.";
        USAGE_REPORTED: Info, None, ["llm_input_tokens", "llm_output_tokens", "tts_characters", "stt_seconds"], "Usage the call consumed.";
    }
    Security {
        CALLER_VERIFICATION_PASSED: Info, None, [], "The caller was verified.";
        CALLER_VERIFICATION_FAILED: Warning, None, [], "The caller could not be verified.";
        AUTHENTICATION_FAILED: Critical, None, [], "An integration's credentials were refused.";
    }
    Workflows {
        WORKFLOW_STARTED: Info, None, ["workflow"], "A workflow started.";
        WORKFLOW_COMPLETED: Info, None, [], "A workflow finished.";
        WORKFLOW_FAILED: Error, None, ["failure_reason"], "A workflow failed.";
    }
    Knowledge {
        KNOWLEDGE_QUERY_EXECUTED: Info, None, ["query", "results_count", "latency_ms"], "The knowledge base was queried.";
        KNOWLEDGE_QUERY_FAILED: Warning, None, ["failure_reason"], "A knowledge-base query failed.";
    }
}

/// Finds a catalogue event by its exact code.
#[must_use]
pub fn lookup_event(code: &str) -> Option<&'static EventSpec> {
    CATALOGUE.iter().find(|e| e.code == code)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn codes_are_unique_and_found() {
        let mut seen = HashSet::new();
        for e in CATALOGUE {
            assert!(seen.insert(e.code), "duplicate {}", e.code);
            assert_eq!(lookup_event(e.code), Some(e));
            assert!(
                e.code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{}",
                e.code
            );
            assert!(!e.description.is_empty());
        }
        assert_eq!(CATALOGUE.len(), 55);
        assert_eq!(
            lookup_event("agent_message_sent"),
            None,
            "codes are case-sensitive"
        );
        assert_eq!(lookup_event("NOPE"), None);
    }

    #[test]
    fn every_category_has_events() {
        for c in Category::ALL {
            assert!(
                CATALOGUE.iter().any(|e| e.category == c),
                "{c} has no events"
            );
        }
    }

    #[test]
    fn entries_match_events_md() {
        use events::*;
        let table = [
            (CALL_COMPLETED, Category::CallLifecycle, Level::Info, T_DONE),
            (CALL_FAILED, Category::CallLifecycle, Level::Error, T_FAIL),
            (
                CALL_CANCELED,
                Category::CallLifecycle,
                Level::Warning,
                T_CANCEL,
            ),
            (
                CALL_DEADLINE_EXCEEDED,
                Category::CallLifecycle,
                Level::Error,
                T_FAIL,
            ),
            (
                CALL_REJECTED_BY_WEBHOOK,
                Category::CallLifecycle,
                Level::Warning,
                T_FAIL,
            ),
            (USER_STARTED_SPEAKING, Category::User, Level::Debug, None),
            (
                TRANSFER_TOOL_FAILED,
                Category::CallTools,
                Level::Error,
                None,
            ),
            (
                CONTEXT_LOOKUP_FAILED,
                Category::IntegrationTools,
                Level::Warning,
                None,
            ),
            (
                NODE_GENERATION_STARTED,
                Category::ConversationalPaths,
                Level::Debug,
                None,
            ),
            (WEBHOOK_QUEUED, Category::Webhooks, Level::Debug, None),
            (
                WEBHOOK_RETRY_EXHAUSTED,
                Category::Webhooks,
                Level::Error,
                None,
            ),
            (
                AUTHENTICATION_FAILED,
                Category::Security,
                Level::Critical,
                None,
            ),
            (
                KNOWLEDGE_QUERY_FAILED,
                Category::Knowledge,
                Level::Warning,
                None,
            ),
        ];
        for (spec, category, level, outcome) in table {
            assert_eq!(
                (spec.category, spec.level, spec.outcome),
                (category, level, outcome),
                "{}",
                spec.code
            );
        }
        let terminal: Vec<_> = CATALOGUE
            .iter()
            .filter(|e| e.outcome.is_some())
            .map(|e| e.code)
            .collect();
        assert_eq!(
            terminal,
            [
                "CALL_COMPLETED",
                "CALL_FAILED",
                "CALL_CANCELED",
                "CALL_DEADLINE_EXCEEDED",
                "CALL_REJECTED_BY_WEBHOOK"
            ]
        );
        assert_eq!(
            CALL_STARTED.fields,
            ["direction", "from", "to", "campaign_id"]
        );
    }
}
