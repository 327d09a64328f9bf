//! Pipeline health (work in progress).
