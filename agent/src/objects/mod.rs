//! Kubernetes objects: parsing, kinds, defaults and validation.
