mod check;
mod demo;
mod httproute;
mod mtls;
mod plaintext;
mod ratelimit;
mod resilience;
mod routing;
