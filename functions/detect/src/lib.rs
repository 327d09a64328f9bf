//! Detect function library (work in progress).
