//! Linux adapter for the handover protocol (socket2 transport, blocking and tokio APIs).
