//! Inbound replies: classifying what a person texted back
//! ([`keywords`]), what a reply does to consent and what Herald answers
//! ([`reply`]), reading a webhook's form body ([`form`]) and verifying that
//! it really comes from the provider ([`signature`]). The HTTP handlers that
//! receive them are in `http::twilio`.

pub mod form;
pub mod keywords;
pub mod reply;
pub mod signature;
