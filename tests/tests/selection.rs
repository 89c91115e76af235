//! The `selection` export: the component's own filter engine, as the Python and Node hosts'
//! directories call it on an instance of its own. The same answers as the core's `select`
//! (numbers as numbers, the primary value, missing values last), and its errors as
//! `directory-error` cases.

use host_example::types::{DirectoryError, Search, Selection};
use scim_provisioner_tests::component::runtime;

fn search(
    filter: Option<&str>,
    sort_by: Option<&str>,
    descending: bool,
    start: u32,
    count: u32,
) -> Search {
    Search {
        filter: filter.map(str::to_string),
        start_index: start,
        count,
        sort_by: sort_by.map(str::to_string),
        sort_descending: descending,
    }
}

/// The total and the page's indices, or the error (the bindings derive no `PartialEq`).
fn select(resources: &[String], search: &Search) -> Result<(u64, Vec<u32>), DirectoryError> {
    match runtime().select(resources, search) {
        Ok(answer) => answer.map(|s: Selection| (s.total_results, s.indices)),
        Err(e) => panic!("the selection export trapped: {e:#}"),
    }
}

fn users() -> Vec<String> {
    [
        r#"{"id":"a","userName":"Zed","n":10,"emails":[{"value":"z@x"},{"value":"b@x","primary":true}],"meta":{"resourceType":"User","lastModified":"2024-01-02T00:00:00Z"}}"#,
        r#"{"id":"b","userName":"amy","n":9,"emails":[{"value":"a@x"}],"meta":{"resourceType":"User","lastModified":"2024-01-01T00:00:00Z"}}"#,
        r#"{"id":"c","userName":"Bob","active":false,"emails":[{"value":"c@x","primary":true}],"meta":{"resourceType":"User","lastModified":"2024-01-03T00:00:00Z"}}"#,
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn sorts_numbers_as_numbers_and_multi_valued_attributes_by_their_primary_value() {
    let r = users();
    let by = |path: &str, desc: bool| select(&r, &search(None, Some(path), desc, 1, 10)).ok();
    assert_eq!(
        by("n", false),
        Some((3, vec![1, 0, 2])),
        "9 < 10 as numbers; no value last"
    );
    assert_eq!(
        by("n", true),
        Some((3, vec![2, 0, 1])),
        "descending: no value first"
    );
    assert_eq!(
        by("emails", false),
        Some((3, vec![1, 0, 2])),
        "a@x < b@x (primary) < c@x"
    );
    assert_eq!(
        by("userName", false),
        Some((3, vec![1, 2, 0])),
        "case-insensitive"
    );
}

#[test]
fn filters_and_pages_with_the_total_of_every_match() {
    let r = users();
    let recent = r#"meta.lastModified ge "2024-01-02T00:00:00Z""#;
    let s = select(&r, &search(Some(recent), Some("userName"), false, 1, 10)).ok();
    assert_eq!(s, Some((2, vec![2, 0])));
    let page = select(&r, &search(Some("userName pr"), None, false, 2, 1)).ok();
    assert_eq!(page, Some((3, vec![1])));
    let blocked = r#"id eq "c" or active eq false"#;
    let only_total = select(&r, &search(Some(blocked), None, false, 0, 0)).ok();
    assert_eq!(only_total, Some((1, vec![])), "count 0: the total only");
}

#[test]
fn errors_are_directory_errors() {
    let r = users();
    let bad_filter = select(&r, &search(Some("userName eq"), None, false, 1, 10));
    assert!(
        matches!(bad_filter, Err(DirectoryError::InvalidFilter(_))),
        "{bad_filter:?}"
    );
    let bad_sort = select(&r, &search(None, Some("a[b"), false, 1, 10));
    assert!(
        matches!(bad_sort, Err(DirectoryError::Other(_))),
        "{bad_sort:?}"
    );
    let not_json = select(
        &["{".to_string()],
        &search(Some("userName pr"), None, false, 1, 10),
    );
    assert!(
        matches!(&not_json, Err(DirectoryError::Other(m)) if m.contains("resource 0")),
        "{not_json:?}"
    );
}
