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
/// - `call_event!(CODE, field = value, ..)`: a catalogue event (`docs/events.md`) at its default
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

/// Opens a turn of the conversation: a customer-visible `tracing::Span` named `turn`
/// carrying the turn number, the identity of the call it is opened in
/// (`call.id`, `tenant.id`, `agent.id`) and `callscope.visibility = "customer"`, so the
/// collector stores it. Extra fields follow as in `tracing::info_span!`.
///
/// Every call event emitted inside the turn carries `turn` (unless it sets one), which
/// is how the customer API joins a turn's transcript, latency and interruptions. Time
/// the turn's stages with [`stage_span!`](crate::stage_span); when the turn span closes,
/// the layer emits the turn's `TURN_LATENCY` (`stt_ms`, `llm_ttft_ms`, `tts_ttfb_ms`,
/// `tool_ms`, and `end_to_end_ms`, the turn span's own duration), unless a
/// `TURN_LATENCY` was emitted inside the turn already.
///
/// ```
/// use callscope_tracing::{call_span, first_output, stage_span, turn_span};
///
/// let call = call_span!(call_id = "c-1", tenant_id = "acme");
/// let _in_call = call.enter();
/// let turn = turn_span!(turn = 1);
/// let _in_turn = turn.enter();
/// {
///     let stt = stage_span!(stt);
///     let _in_stt = stt.enter();
///     // … transcribe …
/// }
/// {
///     let llm = stage_span!(llm, model = "small");
///     let _in_llm = llm.enter();
///     first_output(); // the first token arrived
/// }
/// ```
#[macro_export]
macro_rules! turn_span {
    (turn = $turn:expr $(, $($fields:tt)*)?) => {{
        let span = $crate::__private::tracing::span!(
            target: "callscope::turn",
            $crate::__private::tracing::Level::INFO,
            "turn",
            turn = $turn,
            callscope.visibility = "customer",
            call.id = $crate::__private::tracing::field::Empty,
            tenant.id = $crate::__private::tracing::field::Empty,
            agent.id = $crate::__private::tracing::field::Empty,
            $($($fields)*)?
        );
        $crate::__private::attach_call(&span);
        span
    }};
}

/// Opens a stage of a turn: a customer-visible `tracing::Span` named after the stage
/// (`stt`, `llm`, `tts` or `tool`; anything else does not compile), with the call's
/// identity, like [`turn_span!`](crate::turn_span). Extra fields follow as in
/// `tracing::info_span!`. Inside an `llm` or `tts` stage, call
/// [`first_output`](crate::first_output) when the first token or audio byte arrives.
///
/// ```
/// use callscope_tracing::stage_span;
///
/// let tool = stage_span!(tool, tool_name = "crm_lookup");
/// # drop(tool);
/// ```
///
/// ```compile_fail
/// let s = callscope_tracing::stage_span!(asr);
/// ```
#[macro_export]
macro_rules! stage_span {
    ($stage:ident $(, $($fields:tt)*)?) => {{
        let _: &str = $crate::__private::stage::$stage;
        let span = $crate::__private::tracing::span!(
            target: "callscope::stage",
            $crate::__private::tracing::Level::INFO,
            stringify!($stage),
            callscope.visibility = "customer",
            call.id = $crate::__private::tracing::field::Empty,
            tenant.id = $crate::__private::tracing::field::Empty,
            agent.id = $crate::__private::tracing::field::Empty,
            $($($fields)*)?
        );
        $crate::__private::attach_call(&span);
        span
    }};
}
