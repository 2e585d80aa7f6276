mod check;
mod demo;
mod httproute;
mod mtls;
mod plaintext;
mod resilience;
mod routing;
