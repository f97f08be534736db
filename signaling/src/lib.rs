//! The WebSocket gateway and the event bus (in-process or Redis).
