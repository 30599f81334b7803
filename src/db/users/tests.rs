//! Unit tests of `users`.

use super::*;

#[test]
fn search_prefixes_escape_like_wildcards() {
    assert_eq!(prefix_pattern("ann"), "ann%");
    assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
}
