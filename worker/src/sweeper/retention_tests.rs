//! Table tests of [`super::plan`]: every rule, its boundary, and how the
//! rules combine.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use super::*;

const NOW: u64 = 1_800_000_000_000;
const HOUR: u64 = 3_600_000;

fn policy(keep: usize, days: u64) -> RetentionPolicy {
    RetentionPolicy { keep_per_user: keep, max_age_ms: days * DAY_MS }
}

fn b(id: &str, user: &str, session: &str, age_ms: u64, state: BackupState) -> StoredBackup {
    StoredBackup {
        id: id.into(),
        session_id: session.into(),
        user_id: user.into(),
        created_at_ms: NOW - age_ms,
        kind: Some(BackupKind::Archive),
        location: format!("{id}.zip"),
        state,
        removed: false,
    }
}

fn ok(id: &str, user: &str, session: &str, age_ms: u64) -> StoredBackup {
    b(id, user, session, age_ms, BackupState::Succeeded)
}

fn marks(p: &Prune) -> Vec<(&str, Reason)> {
    p.records_to_mark.iter().map(|m| (m.backup_id.as_str(), m.reason)).collect()
}

fn none() -> HashMap<String, u64> {
    HashMap::new()
}

fn deleted(session: &str, ago_ms: u64) -> HashMap<String, u64> {
    HashMap::from([(session.to_owned(), NOW - ago_ms)])
}

#[test]
fn the_defaults_are_ten_per_user_and_thirty_days() {
    assert_eq!(RetentionPolicy::default(), policy(10, 30));
}

#[test]
fn a_succeeded_backup_goes_only_when_strictly_older_than_the_max_age() {
    let max = 30 * DAY_MS;
    let all = [ok("exact", "u", "s1", max), ok("older", "u", "s2", max + 1), ok("younger", "u", "s3", max - 1)];
    let p = plan(&all, &none(), NOW, &policy(10, 30));
    assert_eq!(marks(&p), vec![("older", Reason::MaxAge)]);
    assert_eq!(p.files_to_remove, vec!["older.zip"]);
}

#[test]
fn a_backup_from_the_future_has_no_age() {
    let mut future = ok("future", "u", "s", 0);
    future.created_at_ms = NOW + DAY_MS;
    assert_eq!(plan(&[future], &none(), NOW, &policy(10, 30)), Prune::default());
}

#[test]
fn each_user_keeps_their_newest_succeeded_backups() {
    let all = [
        ok("u1-a", "u1", "s1", 5 * HOUR),
        ok("u1-b", "u1", "s2", 4 * HOUR),
        ok("u1-c", "u1", "s3", 3 * HOUR),
        ok("u1-d", "u1", "s4", 2 * HOUR),
        ok("u1-e", "u1", "s5", HOUR),
        ok("u2-a", "u2", "t1", 9 * HOUR),
        ok("u2-b", "u2", "t2", 8 * HOUR),
        ok("u2-c", "u2", "t3", 7 * HOUR),
    ];
    let p = plan(&all, &none(), NOW, &policy(3, 30));
    assert_eq!(marks(&p), vec![("u1-a", Reason::KeepPerUser), ("u1-b", Reason::KeepPerUser)]);
    // Exactly at the limit: nothing goes.
    assert_eq!(plan(&all[..3], &none(), NOW, &policy(3, 30)), Prune::default());
}

#[test]
fn equal_creation_times_order_by_id() {
    let all = [ok("b", "u", "s1", HOUR), ok("a", "u", "s2", HOUR), ok("c", "u", "s3", HOUR)];
    let p = plan(&all, &none(), NOW, &policy(2, 30));
    assert_eq!(marks(&p), vec![("a", Reason::KeepPerUser)], "the smallest id counts as the oldest");
}

#[test]
fn max_age_is_the_reason_when_both_rules_prune() {
    let all = [ok("old", "u", "s1", 40 * DAY_MS), ok("mid", "u", "s2", 2 * DAY_MS), ok("new", "u", "s3", DAY_MS)];
    let p = plan(&all, &none(), NOW, &policy(1, 30));
    assert_eq!(marks(&p), vec![("old", Reason::MaxAge), ("mid", Reason::KeepPerUser)]);
}

#[test]
fn the_newest_backup_of_a_recently_deleted_session_is_kept_over_the_limit() {
    let all = [
        ok("gone-1", "u", "gone", 10 * DAY_MS),
        ok("gone-2", "u", "gone", 9 * DAY_MS),
        ok("live-1", "u", "live", 2 * HOUR),
        ok("live-2", "u", "live", HOUR),
    ];
    let p = plan(&all, &deleted("gone", 9 * DAY_MS), NOW, &policy(2, 30));
    assert_eq!(marks(&p), vec![("gone-1", Reason::KeepPerUser)], "gone-2 is what a restore would use");
    // Without the delete time the same backup goes.
    let p = plan(&all, &none(), NOW, &policy(2, 30));
    assert_eq!(marks(&p), vec![("gone-1", Reason::KeepPerUser), ("gone-2", Reason::KeepPerUser)]);
}

#[test]
fn the_protection_also_beats_the_max_age() {
    // Deleted a day ago, but its newest backup is older (taken on demand, say).
    let all = [ok("old", "u", "s", 40 * DAY_MS), ok("older", "u", "s", 50 * DAY_MS)];
    let p = plan(&all, &deleted("s", DAY_MS), NOW, &policy(10, 30));
    assert_eq!(marks(&p), vec![("older", Reason::MaxAge)]);
}

#[test]
fn the_protection_ends_exactly_at_the_max_age_after_the_delete() {
    let max = 30 * DAY_MS;
    let all = [ok("x", "u", "s", max), ok("newer", "u", "t", HOUR)];
    let just_before = plan(&all, &deleted("s", max - 1), NOW, &policy(1, 30));
    assert_eq!(marks(&just_before), vec![]);
    let exactly = plan(&all, &deleted("s", max), NOW, &policy(1, 30));
    assert_eq!(marks(&exactly), vec![("x", Reason::KeepPerUser)], "deleted max-age ago is no longer 'less than'");
}

#[test]
fn a_protected_backup_still_counts_toward_the_limit() {
    let all = [
        ok("old-live", "u", "live", 3 * HOUR),
        ok("protected", "u", "gone", 2 * HOUR),
        ok("new-live", "u", "live", HOUR),
    ];
    let p = plan(&all, &deleted("gone", 2 * HOUR), NOW, &policy(2, 30));
    assert_eq!(marks(&p), vec![("old-live", Reason::KeepPerUser)]);
}

#[test]
fn a_live_sessions_backups_have_no_protection() {
    let all = [ok("a", "u", "live", 2 * HOUR), ok("b", "u", "live", HOUR)];
    let p = plan(&all, &none(), NOW, &policy(1, 30));
    assert_eq!(marks(&p), vec![("a", Reason::KeepPerUser)]);
}

#[test]
fn failed_backups_age_out_with_their_partial_file_and_do_not_count() {
    let all = [
        ok("ok-1", "u", "s1", 5 * HOUR),
        ok("ok-2", "u", "s2", 4 * HOUR),
        b("f-new-1", "u", "s3", 3 * HOUR, BackupState::Failed),
        b("f-new-2", "u", "s3", 2 * HOUR, BackupState::Failed),
        b("f-exact", "u", "s3", 30 * DAY_MS, BackupState::Failed),
        b("f-old", "u", "s3", 30 * DAY_MS + 1, BackupState::Failed),
    ];
    let p = plan(&all, &none(), NOW, &policy(2, 30));
    assert_eq!(marks(&p), vec![("f-old", Reason::MaxAge)]);
    assert_eq!(p.files_to_remove, vec!["f-old.zip", ".f-old.zip.partial"]);
}

#[test]
fn pending_and_unknown_states_are_never_touched_nor_counted() {
    let all = [
        b("p-ancient", "u", "s1", 400 * DAY_MS, BackupState::Pending),
        b("p-new", "u", "s1", 1, BackupState::Pending),
        b("weird", "u", "s1", 400 * DAY_MS, BackupState::Unknown),
        ok("ok", "u", "s2", HOUR),
    ];
    assert_eq!(plan(&all, &none(), NOW, &policy(1, 30)), Prune::default());
}

#[test]
fn a_user_deleted_backup_loses_its_file_on_the_next_pass_whatever_its_age() {
    let mut done = b("done", "u", "s", 2 * HOUR, BackupState::Deleted);
    done.removed = true;
    let all = [b("mine", "u", "s", HOUR, BackupState::Deleted), done];
    let p = plan(&all, &none(), NOW, &policy(10, 30));
    assert_eq!(marks(&p), vec![("mine", Reason::User)]);
    assert_eq!(p.files_to_remove, vec!["mine.zip"]);
}

#[test]
fn a_user_deleted_backup_neither_counts_nor_is_protected() {
    // The newest one of the deleted session was deleted by its user: the one
    // before it is now what a restore would use, and it is protected.
    let all = [
        ok("s-1", "u", "s", 3 * DAY_MS),
        ok("s-2", "u", "s", 2 * DAY_MS),
        b("s-3", "u", "s", DAY_MS, BackupState::Deleted),
        ok("t-1", "u", "t", HOUR),
    ];
    let p = plan(&all, &deleted("s", DAY_MS), NOW, &policy(1, 30));
    assert_eq!(marks(&p), vec![("s-1", Reason::KeepPerUser), ("s-3", Reason::User)]);
}

#[test]
fn already_removed_records_are_left_alone_and_do_not_count() {
    let mut removed = b("removed", "u", "s1", 40 * DAY_MS, BackupState::Deleted);
    removed.removed = true;
    let mut odd = ok("removed-ok", "u", "s2", HOUR);
    odd.removed = true;
    let all = [removed, odd, ok("kept", "u", "s3", 2 * HOUR)];
    assert_eq!(plan(&all, &none(), NOW, &policy(1, 30)), Prune::default());
}

#[test]
fn a_location_that_is_not_a_plain_file_name_is_refused() {
    let mut evil = ok("evil", "u", "s1", 40 * DAY_MS);
    evil.location = "../etc/passwd".into();
    let mut abs = b("abs", "u", "s2", HOUR, BackupState::Deleted);
    abs.location = "/backup/x.zip".into();
    let mut empty = b("empty", "u", "s3", 40 * DAY_MS, BackupState::Failed);
    empty.location = String::new();
    let p = plan(&[evil, abs, empty], &none(), NOW, &policy(10, 30));
    assert_eq!(p.refused, vec!["evil", "abs"]);
    assert_eq!(marks(&p), vec![("empty", Reason::MaxAge)], "nothing to remove, marked all the same");
    assert_eq!(p.records_to_mark[0].files, Vec::<String>::new());
    assert!(p.files_to_remove.is_empty());
}

#[test]
fn a_file_another_kept_record_names_is_never_removed() {
    let old = ok("old", "u", "s1", 40 * DAY_MS);
    let mut twin = ok("twin", "u", "s2", HOUR);
    twin.location = old.location.clone();
    let p = plan(&[old, twin], &none(), NOW, &policy(10, 30));
    assert_eq!(marks(&p), vec![("old", Reason::MaxAge)]);
    assert!(p.files_to_remove.is_empty());
}

#[test]
fn a_zero_limit_switches_its_rule_off() {
    let all = [ok("a", "u", "s1", 400 * DAY_MS), ok("b", "u", "s2", 300 * DAY_MS), ok("c", "u", "s3", HOUR)];
    let no_keep = plan(&all, &none(), NOW, &policy(0, 30));
    assert_eq!(marks(&no_keep), vec![("a", Reason::MaxAge), ("b", Reason::MaxAge)]);
    let no_age = plan(&all, &none(), NOW, &policy(1, 0));
    assert_eq!(marks(&no_age), vec![("a", Reason::KeepPerUser), ("b", Reason::KeepPerUser)]);
    // With no age limit, a deleted session's newest backup is kept however long ago.
    let forever = plan(&all, &deleted("s1", 400 * DAY_MS), NOW, &policy(1, 0));
    assert_eq!(marks(&forever), vec![("b", Reason::KeepPerUser)]);
    assert_eq!(plan(&all, &none(), NOW, &policy(0, 0)), Prune::default());
}

#[test]
fn marks_and_files_come_oldest_first() {
    let all = [
        b("u-new", "u", "s1", HOUR, BackupState::Deleted),
        ok("aged", "u", "s2", 50 * DAY_MS),
        b("u-old", "u", "s3", 40 * DAY_MS, BackupState::Deleted),
    ];
    let p = plan(&all, &none(), NOW, &policy(10, 30));
    assert_eq!(marks(&p), vec![("aged", Reason::MaxAge), ("u-old", Reason::User), ("u-new", Reason::User)]);
    assert_eq!(p.files_to_remove, vec!["aged.zip", "u-old.zip", "u-new.zip"]);
}

#[test]
fn batches_hold_at_most_the_limit_and_never_split_a_record() {
    let mut all: Vec<StoredBackup> = (0..45).map(|i| ok(&format!("ok-{i:02}"), "u", "s", 40 * DAY_MS + i)).collect();
    all.push(b("failed", "u", "s", 40 * DAY_MS + 100, BackupState::Failed));
    let p = plan(&all, &none(), NOW, &policy(10, 30));
    assert_eq!(p.records_to_mark.len(), 46);
    assert_eq!(p.files_to_remove.len(), 47);
    let parts = p.batches(40);
    assert_eq!(parts.iter().map(|b| b.files_to_remove.len()).collect::<Vec<_>>(), vec![40, 7]);
    // The failed record (two files, the oldest, so first) is whole in the first part.
    assert_eq!(parts[0].records_to_mark[0].backup_id, "failed");
    assert_eq!(parts[0].records_to_mark.len(), 39);
    let rejoined: Vec<Mark> = parts.iter().flat_map(|b| b.records_to_mark.clone()).collect();
    assert_eq!(rejoined, p.records_to_mark);
    assert_eq!(Prune::default().batches(40), Vec::<Prune>::new());
}

#[test]
fn a_sessions_delete_time_comes_from_its_record_or_its_newest_backup() {
    let backups =
        [ok("a", "u", "s", 3 * HOUR), ok("b", "u", "s", 2 * HOUR), b("c", "u", "s", HOUR, BackupState::Failed)];
    assert_eq!(deleted_at(SessionSeen::Live, &backups), None);
    assert_eq!(deleted_at(SessionSeen::Deleted { at_ms: 42 }, &backups), Some(42));
    assert_eq!(deleted_at(SessionSeen::Gone, &backups), Some(NOW - 2 * HOUR), "the newest succeeded one");
    assert_eq!(deleted_at(SessionSeen::Gone, &backups[2..]), None, "no succeeded backup: nothing to protect");
}

#[test]
fn a_snapshot_backup_is_pruned_by_deleting_its_snapshot_and_an_unknown_kind_is_left_alone() {
    let old = 31 * DAY_MS;
    let snap = StoredBackup {
        kind: Some(BackupKind::Snapshot),
        location: "ws-s1-snap-g2".into(),
        ..ok("s1-g2", "u", "s1", old)
    };
    let tape = StoredBackup { kind: None, location: "t1".into(), ..ok("s2-g2", "u", "s2", old) };
    let archive = ok("s3-g2", "u", "s3", old);
    let p = plan(&[snap, tape, archive], &none(), NOW, &policy(10, 30));
    assert_eq!(marks(&p), [("s1-g2", Reason::MaxAge), ("s3-g2", Reason::MaxAge)]);
    assert_eq!(p.records_to_mark[0].snapshot.as_deref(), Some("ws-s1-snap-g2"));
    assert!(p.records_to_mark[0].files.is_empty(), "a snapshot has no file on the backup volume");
    assert_eq!(p.files_to_remove, ["s3-g2.zip"]);
    assert_eq!(p.records_to_mark[1].snapshot, None);
}
