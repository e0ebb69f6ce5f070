//! image-automation: setters that rewrite marked image references, commit messages.
