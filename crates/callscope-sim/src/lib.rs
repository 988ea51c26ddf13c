//! callscope-sim
