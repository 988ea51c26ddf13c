//! callscope-store
