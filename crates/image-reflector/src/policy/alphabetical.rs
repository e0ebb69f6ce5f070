//! Alphabetical ordering: Go `sort.StringSlice`, i.e. plain byte order (`-` < `.` < digits <
//! uppercase < `_` < lowercase; `9` > `10`). `asc` picks the greatest value, `desc` the least.

use std::cmp::Ordering;

use api_types::SortOrder;

/// How `candidate` compares to `best` for selection: `Greater` means it should replace it.
pub fn rank(order: SortOrder, candidate: &str, best: &str) -> Ordering {
    let by_bytes = candidate.as_bytes().cmp(best.as_bytes());
    match order {
        SortOrder::Asc => by_bytes,
        SortOrder::Desc => by_bytes.reverse(),
    }
}
