//! `call_span!` and `call_event!`: the two macros agent code uses.

/// Opens a call: a `tracing::Span` named `call` carrying `call.id`, `tenant.id` and
/// (optionally) `agent.id`. Every record emitted inside it — in child spans,
/// `.instrument()`ed futures and tasks that carry it — is stamped with these three
/// attributes. Values are recorded with `Display`.
///
/// ```
/// use callscope_tracing::call_span;
///
/// let span = call_span!(call_id = "c-1", tenant_id = "acme", agent_id = "support-bot");
/// let _entered = span.enter();
/// let without_agent = call_span!(call_id = "c-2", tenant_id = "acme");
/// # drop(without_agent);
/// ```
///
/// The identity is read when the span is created; give all three fields here rather
/// than recording them later (a later `span.record("agent.id", ..)` only reaches spans
/// created afterwards).
#[macro_export]
macro_rules! call_span {
    (call_id = $call:expr, tenant_id = $tenant:expr, agent_id = $agent:expr $(,)?) => {
        $crate::__private::tracing::span!(
            target: "callscope::call",
            $crate::__private::tracing::Level::INFO,
            "call",
            call.id = %$call,
            tenant.id = %$tenant,
            agent.id = %$agent,
        )
    };
    (call_id = $call:expr, tenant_id = $tenant:expr $(,)?) => {
        $crate::__private::tracing::span!(
            target: "callscope::call",
            $crate::__private::tracing::Level::INFO,
            "call",
            call.id = %$call,
            tenant.id = %$tenant,
        )
    };
}

/// Emits a customer-visible call event.
///
/// Forms (fields and an optional message follow as in `tracing::info!`, with `%` and `?`
/// sigils; integers, floats and booleans stay typed):
///
/// - `call_event!(CODE, field = value, ..)`: a catalogue event (EVENTS.md) at its default
///   level. `CODE` is a constant of `callscope_model::events`, so a typo does not compile.
/// - `call_event!(level: Level::Warning, CODE, ..)`: the same at another level (a
///   constant `callscope_model::Level`).
/// - `call_event!(custom "MY_EVENT", category: Category::Agent, ..)` and
///   `call_event!(custom "MY_EVENT", category: Category::Agent, level: Level::Debug, ..)`:
///   an event outside the catalogue; the name must be a string literal and the category
///   is required (default level INFO).
///
/// The record gets `event_name` = the code, `callscope.visibility = "customer"`,
/// `callscope.category`, the level's severity number and text, the call's identity and
/// trace context, and the fields as attributes. Fields named `internal.*` are kept out
/// of the customer record and sent in a companion internal record instead.
///
/// ```
/// use callscope_tracing::call_event;
/// use callscope_model::{Category, Level};
///
/// let reply = "How can I help?";
/// call_event!(AGENT_MESSAGE_SENT, text = %reply);
/// call_event!(TURN_LATENCY, turn = 1, stt_ms = 180, end_to_end_ms = 910, "Turn done");
/// call_event!(level: Level::Warning, AGENT_MESSAGE_SENT, text = "Sorry?", internal.pod = "p1");
/// call_event!(custom "CRM_NOTE_SAVED", category: Category::IntegrationTools, note_id = 7);
/// ```
///
/// A misspelt code is a compile error:
///
/// ```compile_fail
/// callscope_tracing::call_event!(AGENT_MESAGE_SENT, text = "hi");
/// ```
#[macro_export]
macro_rules! call_event {
    (custom $name:literal, category: $category:expr, level: $level:expr $(, $($rest:tt)*)?) => {{
        let _pending = $crate::__private::PendingGuard::set($category, $level);
        $crate::call_event!(@emit $name, $level $(, $($rest)*)?);
    }};
    (custom $name:literal, category: $category:expr $(, $($rest:tt)*)?) => {
        $crate::call_event!(
            custom $name,
            category: $category,
            level: $crate::__private::Level::Info
            $(, $($rest)*)?
        )
    };
    (level: $level:expr, $code:ident $(, $($rest:tt)*)?) => {{
        let _pending = $crate::__private::PendingGuard::set(
            $crate::__private::events::$code.category,
            $level,
        );
        $crate::call_event!(
            @emit $crate::__private::events::$code.code,
            $level
            $(, $($rest)*)?
        );
    }};
    (@emit $name:expr, $level:expr $(,)?) => {
        $crate::__private::tracing::event!(
            name: $name,
            target: "callscope::event",
            { $crate::__private::tracing_level($level) },
            {}
        )
    };
    (@emit $name:expr, $level:expr, $($rest:tt)+) => {
        $crate::__private::tracing::event!(
            name: $name,
            target: "callscope::event",
            { $crate::__private::tracing_level($level) },
            $($rest)+
        )
    };
    ($code:ident $(, $($rest:tt)*)?) => {
        $crate::call_event!(
            level: $crate::__private::events::$code.level,
            $code
            $(, $($rest)*)?
        )
    };
}
