//! The str0m selective forwarding unit: sans-IO rooms and the UDP driver.
