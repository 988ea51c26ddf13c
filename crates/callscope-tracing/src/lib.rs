//! callscope-tracing
