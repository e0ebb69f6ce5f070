//! image-reflector: registry scanning, the tag store and policy evaluation.
