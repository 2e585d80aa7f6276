//! Manifests → IR.
