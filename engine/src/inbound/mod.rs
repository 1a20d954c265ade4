//! Inbound replies (DESIGN §6): STOP / START / HELP and the rest.

pub mod keywords;
pub mod signature;
pub mod webhook;
