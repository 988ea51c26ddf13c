//! callscope-collector
