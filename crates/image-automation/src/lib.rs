//! image-automation: setters that rewrite marked image references, commit messages, and the
//! offline `update` command.
//!
//! - [`setters`]: find `# {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}` markers and rewrite
//!   the marked scalars in place ([`setters::rewrite`] is pure, [`setters::apply`] does the I/O).
//! - [`message`]: Flux's commit-message template data (`.AutomationObject`, `.Changed`,
//!   `.Values`, and the legacy `.Updated`) rendered with the `go-template` crate.
//! - [`cli`]: the commands (`serve`, and [`cli::update`], `image-automation update`).
//! - [`reconcile`]: the reconcile core of one ImageUpdateAutomation (Flux's algorithm);
//!   [`reflector_client`]: image-reflector's HTTP API and change feed.
//! - [`modes`]: `serve` on the controller kit (`kube-support`): [`modes::standalone`]
//!   (`--manifests DIR`) and [`modes::kube`] (against a cluster); [`metrics`]: the
//!   Prometheus series of both modes.
//!
//! # Deliberate differences from Flux
//!
//! Flux re-serialises every changed file through kyaml; we replace only the bytes of the marked
//! scalars. Hence, in a changed file:
//! - blank lines (#117, #844), a leading `---` (flux2#5644), comments after `---`, `...`
//!   document ends, CRLF line endings, indentation, sequence indent style, flow style, and
//!   literal/folded blocks (#616, #528) are kept byte for byte;
//! - the new value is double-quoted when any YAML reader (1.1 or 1.2) would read it as a
//!   non-string, including date-like tags (#713) and values replacing `~`/empty values (Flux
//!   writes those plain); existing quotes are kept; a plain numeric old value never gets a
//!   stale `!!float` tag.
//!
//! And beyond the formatting:
//! - markers in top-level sequences work (Flux: problem file, #624); a `kind: List` is edited
//!   in place with changes attributed to its items (Flux writes new files, flux2#5064);
//! - `.git/` is not walked; `update.path` climbing out with `..` is an error (Flux clamps);
//! - what Flux ignores silently is reported in [`setters::UpdateResult::unmatched`] with path
//!   and line: markers naming another namespace or an unknown policy, invalid markers, markers
//!   in places Flux does not read, block-scalar markers, unparseable files, symlinks leaving
//!   the tree;
//! - `.Changed.Changes` and the per-object change lists are sorted (setter, old, new) as in
//!   newer Flux instead of Go's random map order; `.Updated` (v1beta1) renders instead of
//!   stalling.
//!
//! Same as Flux: file selection (`*.yaml`, `*.yml`, `Kustomization`, containing
//! `"$imagepolicy"`), the marker grammar (line comment of a scalar value, or the single comment
//! line above a sequence item when it has no line comment), identifiers from each document's
//! own `apiVersion`/`kind`/`metadata`, one invalid policy image failing the run, dangling
//! symlinks skipped, symlinked directories not followed.

pub mod cli;
pub mod git;
pub mod message;
pub mod metrics;
pub mod modes;
pub mod reconcile;
pub mod reflector_client;
pub mod setters;
pub mod template_data;
