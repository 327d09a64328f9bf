//! Backtesting (work in progress).
