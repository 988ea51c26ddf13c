//! callscope-api
