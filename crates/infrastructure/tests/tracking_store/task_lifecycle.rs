//! A task's lifecycle in the task store: archived tasks and the `archived` filter, the
//! trash (out of every read but its own), restore, purge, and the purge's lease.

use std::time::Duration;

use chrono::Utc;
use keel_domain::StoreError;
use keel_domain::tracking::ports::{
    CommentRepository, SubtreeAction, SubtreeArchive, SubtreeWrite, TaskRepository,
};
use keel_domain::tracking::{
    ArchivedFilter, Comment, CommentBody, Project, Scope, Task, TaskFilter, TaskSort,
};
use keel_infrastructure::entities::task_labels;
use keel_infrastructure::trash_purge::claim_purge_lease;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
use uuid::Uuid;

use crate::common::*;

/// Saves `task` changed by `change` as the use cases do: an update guarded by its version.
async fn save(s: &Store, task: &Task, change: impl FnOnce(&mut Task)) -> Task {
    let mut after = task.clone();
    change(&mut after);
    after.version = task.version + 1;
    assert!(
        s.tasks
            .update(
                &after,
                None,
                task.version,
                &audit("task.updated", Some(task.project_id))
            )
            .await
            .unwrap(),
        "{}",
        s.name
    );
    after
}

fn archived(mode: ArchivedFilter) -> TaskFilter {
    TaskFilter {
        archived: mode,
        ..TaskFilter::default()
    }
}

/// The ids of the project's tasks in `mode`, through the list and through the page with
/// access (both must agree).
async fn listed(s: &Store, p: &Project, owner: Uuid, mode: ArchivedFilter) -> Vec<Uuid> {
    let sort = TaskSort::parse("createdAt").unwrap();
    let q = query(Scope::Project(p.id), archived(mode), sort, 50);
    let listed: Vec<Uuid> = s.tasks.list(&q).await.unwrap().iter().map(|t| t.id).collect();
    let (_, paged) = s.tasks.page_with_access(p.id, owner, &q).await.unwrap().unwrap();
    assert_eq!(
        paged.iter().map(|t| t.id).collect::<Vec<_>>(),
        listed,
        "{}",
        s.name
    );
    let across = query(Scope::MemberOf(owner), archived(mode), sort, 50);
    let across: Vec<Uuid> = s
        .tasks
        .list(&across)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(across, listed, "{}: /tasks agrees", s.name);
    listed
}

#[tokio::test]
async fn archived_tasks_are_left_out_unless_asked_for() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "ARC", owner).await;
        let mut made = Vec::new();
        for i in 0..3 {
            let mut t = task_value(&p, owner, &format!("Task {i}"));
            t.created_at = at(i);
            made.push(create_task(&s, t, &[]).await);
        }
        let archived_task = save(&s, &made[1], |t| t.archived_at = Some(at(10))).await;
        assert_eq!(
            s.tasks.find(made[1].id).await.unwrap().unwrap(),
            archived_task,
            "{}: an archived task is still found, with archived_at",
            s.name
        );
        let ids: Vec<Uuid> = made.iter().map(|t| t.id).collect();
        assert_eq!(
            listed(&s, &p, owner, ArchivedFilter::Exclude).await,
            [ids[0], ids[2]],
            "{}",
            s.name
        );
        assert_eq!(
            listed(&s, &p, owner, ArchivedFilter::Include).await,
            ids,
            "{}",
            s.name
        );
        assert_eq!(
            listed(&s, &p, owner, ArchivedFilter::Only).await,
            [ids[1]],
            "{}",
            s.name
        );

        save(&s, &archived_task, |t| t.archived_at = None).await;
        assert_eq!(
            listed(&s, &p, owner, ArchivedFilter::Exclude).await,
            ids,
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn a_trashed_task_is_out_of_every_read_but_the_trash_and_comes_back_with_its_number() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "TRA", owner).await;
        let bug = label(&s, &p, "bug").await;
        let kept = create_task(&s, task_value(&p, owner, "Kept"), &[]).await;
        let task = create_task(&s, task_value(&p, owner, "Binned"), &[bug.id]).await;
        let comment = Comment {
            id: Uuid::new_v4(),
            task_id: task.id,
            project_id: p.id,
            author_id: owner,
            body: CommentBody::parse("a comment").unwrap(),
            created_at: at(1),
            updated_at: at(1),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();

        let binned = save(&s, &task, |t| t.deleted_at = Some(at(20))).await;
        assert_eq!(s.tasks.find(task.id).await.unwrap(), None, "{}", s.name);
        assert_eq!(s.tasks.find_by_number(&p.key, task.number).await.unwrap(), None);
        assert!(s.tasks.find_with_access(task.id, owner).await.unwrap().is_none());
        assert!(
            s.tasks
                .find_by_number_with_access(&p.key, task.number, owner)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.comments.find(comment.id).await.unwrap(),
            None,
            "{}: the comments of a trashed task are not found either",
            s.name
        );
        for mode in [
            ArchivedFilter::Exclude,
            ArchivedFilter::Include,
            ArchivedFilter::Only,
        ] {
            let ids = listed(&s, &p, owner, mode).await;
            assert!(!ids.contains(&task.id), "{}: {mode:?}", s.name);
        }
        let (_, all) = s
            .tasks
            .page_with_access(
                p.id,
                owner,
                &query(Scope::All, TaskFilter::default(), TaskSort::default(), 50),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all.iter().map(|t| t.id).collect::<Vec<_>>(), [kept.id]);
        assert_eq!(
            s.tasks.find_trashed(task.id).await.unwrap(),
            Some(binned.clone()),
            "{}: in the trash with its labels and deleted_at",
            s.name
        );
        assert_eq!(
            s.tasks.find_trashed_by_number(&p.key, task.number).await.unwrap(),
            Some(binned.clone()),
            "{}",
            s.name
        );
        assert_eq!(s.tasks.find_trashed(kept.id).await.unwrap(), None, "{}", s.name);
        assert_eq!(
            s.tasks.find_trashed_by_number(&p.key, kept.number).await.unwrap(),
            None
        );
        assert_eq!(
            s.tasks.trash_page(p.id, None, 10).await.unwrap(),
            vec![binned.clone()],
            "{}",
            s.name
        );

        // A new task gets the next number: the trashed one keeps its own.
        let newer = create_task(&s, task_value(&p, owner, "Newer"), &[]).await;
        assert_eq!(newer.number, 3, "{}", s.name);

        let restored = save(&s, &binned, |t| t.deleted_at = None).await;
        let found = s
            .tasks
            .find_by_number(&p.key, task.number)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found, restored, "{}", s.name);
        assert_eq!((found.number, found.identifier()), (2, "TRA-2".to_owned()));
        assert!(s.comments.find(comment.id).await.unwrap().is_some(), "{}", s.name);
        assert!(s.tasks.trash_page(p.id, None, 10).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_trash_pages_newest_deletion_first_and_only_its_project() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "TPG", owner).await;
        let other = project(&s, "OTH", owner).await;
        let mut binned = Vec::new();
        for i in 0..5 {
            let t = create_task(&s, task_value(&p, owner, &format!("T{i}")), &[]).await;
            // Two share a deletion time: the id breaks the tie.
            binned.push(save(&s, &t, |t| t.deleted_at = Some(at(30 + i / 2))).await);
        }
        let elsewhere = create_task(&s, task_value(&other, owner, "Elsewhere"), &[]).await;
        save(&s, &elsewhere, |t| t.deleted_at = Some(at(31))).await;
        binned.sort_by(|a, b| (b.deleted_at, b.id.as_bytes()).cmp(&(a.deleted_at, a.id.as_bytes())));
        let mut walked = Vec::new();
        let mut after = None;
        loop {
            let page = s.tasks.trash_page(p.id, after, 2).await.unwrap();
            let full = page.len() == 2;
            if let Some(last) = page.last() {
                after = Some((last.deleted_at.unwrap(), last.id));
            }
            walked.extend(page);
            if !full {
                break;
            }
        }
        assert_eq!(
            walked.iter().map(|t| t.id).collect::<Vec<_>>(),
            binned.iter().map(|t| t.id).collect::<Vec<_>>(),
            "{}",
            s.name
        );
    }
}

#[tokio::test]
async fn the_purge_removes_only_trash_older_than_its_cut_and_records_only_what_it_removed() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let p = project(&s, "PUR", owner).await;
        let bug = label(&s, &p, "bug").await;
        let old = create_task(&s, task_value(&p, owner, "Old"), &[bug.id]).await;
        let recent = create_task(&s, task_value(&p, owner, "Recent"), &[]).await;
        let live = create_task(&s, task_value(&p, owner, "Live"), &[]).await;
        save(&s, &old, |t| t.deleted_at = Some(at(0))).await;
        save(&s, &recent, |t| t.deleted_at = Some(at(60))).await;
        let cut = at(30);

        let expired = s.tasks.expired_trash(cut, 10).await.unwrap();
        assert_eq!(
            expired.iter().map(|t| t.id).collect::<Vec<_>>(),
            [old.id],
            "{}",
            s.name
        );

        let entries = audit_entries(&s, p.id).await;
        let change = audit("task.purged", Some(p.id));
        assert!(
            !s.tasks.purge(recent.id, Some(cut), &change).await.unwrap(),
            "{}: not past the cut",
            s.name
        );
        assert!(
            !s.tasks.purge(live.id, Some(cut), &change).await.unwrap(),
            "{}: not in the trash",
            s.name
        );
        assert_eq!(
            audit_entries(&s, p.id).await,
            entries,
            "{}: nothing recorded",
            s.name
        );
        assert!(
            s.tasks.purge(old.id, Some(cut), &change).await.unwrap(),
            "{}",
            s.name
        );
        assert_eq!(audit_entries(&s, p.id).await, entries + 1, "{}", s.name);
        assert_eq!(s.tasks.find_trashed(old.id).await.unwrap(), None, "{}", s.name);
        assert!(s.tasks.find_trashed(recent.id).await.unwrap().is_some());
        assert!(s.tasks.find(live.id).await.unwrap().is_some());
        let labels_left = task_labels::Entity::find()
            .filter(task_labels::Column::TaskId.eq(old.id))
            .count(s.db.connection())
            .await
            .unwrap();
        assert_eq!(labels_left, 0, "{}", s.name);

        // The purged task's number is never handed out again.
        let next = create_task(&s, task_value(&p, owner, "Next"), &[]).await;
        assert_eq!(next.number, 4, "{}", s.name);
        assert!(
            s.tasks
                .find_by_number(&p.key, old.number)
                .await
                .unwrap()
                .is_none()
        );
    }
}

#[tokio::test]
async fn one_instance_at_a_time_holds_the_purge_lease_apart_from_the_dispatchers() {
    for s in stores().await {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = Utc::now();
        let ttl = Duration::from_secs(60);
        assert!(claim_purge_lease(&s.db, a, now, ttl).await.unwrap(), "{}", s.name);
        assert!(
            !claim_purge_lease(&s.db, b, now, ttl).await.unwrap(),
            "{}: held",
            s.name
        );
        assert!(
            claim_purge_lease(&s.db, a, now, ttl).await.unwrap(),
            "{}: renewed",
            s.name
        );
        // The dispatcher's lease is another row: holding one does not hold the other.
        let outbox = keel_infrastructure::events::outbox::Outbox::new(s.db.clone());
        assert!(outbox.claim_lease(b, now, ttl).await.unwrap(), "{}", s.name);
        // Expired, it goes to the next claimant.
        let later = now + chrono::Duration::seconds(61);
        assert!(
            claim_purge_lease(&s.db, b, later, ttl).await.unwrap(),
            "{}",
            s.name
        );
        assert!(
            !claim_purge_lease(&s.db, a, later, ttl).await.unwrap(),
            "{}",
            s.name
        );
    }
}

/// `P` with a child `C` and a grandchild `G`, and `O` outside the tree, in project `SUB`.
struct Subtree {
    project: Project,
    p: Task,
    c: Task,
    g: Task,
    o: Task,
}

async fn subtree(s: &Store) -> Subtree {
    let owner = user(s, "Owner").await;
    let project = project(s, "SUB", owner).await;
    let p = create_task(s, task_value(&project, owner, "P"), &[]).await;
    let mut c = task_value(&project, owner, "C");
    c.parent_id = Some(p.id);
    let c = create_task(s, c, &[]).await;
    let mut g = task_value(&project, owner, "G");
    g.parent_id = Some(c.id);
    let g = create_task(s, g, &[]).await;
    let o = create_task(s, task_value(&project, owner, "O"), &[]).await;
    Subtree { project, p, c, g, o }
}

/// The cascade of `tasks` (each at its stored version) under `root`, one change each.
async fn cascade(s: &Store, root: &Task, action: SubtreeAction, tasks: &[&Task]) -> SubtreeArchive {
    let mut writes = Vec::new();
    for t in tasks {
        let stored = s.tasks.find(t.id).await.unwrap().unwrap();
        let action_name = match action {
            SubtreeAction::Archive { .. } => "task.archived",
            SubtreeAction::Unarchive { .. } => "task.unarchived",
        };
        let mut change = audit(action_name, Some(root.project_id));
        change.audit.resource_id = Some(t.id.to_string());
        writes.push(SubtreeWrite {
            task_id: t.id,
            expected_version: stored.version,
            change,
        });
    }
    SubtreeArchive {
        root: root.id,
        project_id: root.project_id,
        action,
        updated_at: at(9),
        writes,
    }
}

/// `(archived_at, version)` of each task as stored.
async fn states(s: &Store, tasks: &[&Task]) -> Vec<(Option<chrono::DateTime<Utc>>, i64)> {
    let mut out = Vec::new();
    for t in tasks {
        let stored = s.tasks.find(t.id).await.unwrap().unwrap();
        out.push((stored.archived_at, stored.version));
    }
    out
}

/// Makes every update of the task `id` fail inside the database (a trigger): the failure of
/// one row in the middle of a set-based write.
async fn fail_updates_of(s: &Store, id: Uuid) {
    let sql = if s.name == "postgres" {
        vec![
            "CREATE FUNCTION keel_test_fail() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                .to_owned(),
            format!(
                "CREATE TRIGGER keel_test_fail BEFORE UPDATE ON tasks FOR EACH ROW \
                 WHEN (OLD.id = '{id}') EXECUTE FUNCTION keel_test_fail()"
            ),
        ]
    } else {
        vec![format!(
            "CREATE TRIGGER keel_test_fail BEFORE UPDATE ON tasks WHEN OLD.id = X'{}' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
            id.simple()
        )]
    };
    for statement in sql {
        s.db.connection().execute_unprepared(&statement).await.unwrap();
    }
}

#[tokio::test]
async fn a_subtree_is_archived_and_unarchived_in_one_write_with_a_change_per_task() {
    for s in stores().await {
        let t = subtree(&s).await;
        let (entries, events) = (
            audit_entries(&s, t.project.id).await,
            outbox_events_of(&s, t.project.id).await.len(),
        );
        // G archived on its own first: unarchiving P leaves it archived.
        let alone = cascade(&s, &t.g, SubtreeAction::Archive { at: at(1) }, &[&t.g]).await;
        assert!(s.tasks.archive_subtree(&alone).await.unwrap(), "{}", s.name);
        let write = cascade(&s, &t.p, SubtreeAction::Archive { at: at(5) }, &[&t.p, &t.c]).await;
        assert!(s.tasks.archive_subtree(&write).await.unwrap(), "{}", s.name);
        assert_eq!(
            states(&s, &[&t.p, &t.c, &t.g, &t.o]).await,
            [(Some(at(5)), 2), (Some(at(5)), 2), (Some(at(1)), 2), (None, 1)],
            "{}",
            s.name
        );
        assert_eq!(s.tasks.find(t.c.id).await.unwrap().unwrap().updated_at, at(9));
        // One audit entry and one event per task written, in the order given.
        assert_eq!(audit_entries(&s, t.project.id).await, entries + 3, "{}", s.name);
        let outbox = outbox_events_of(&s, t.project.id).await;
        let written: Vec<Uuid> = write.writes.iter().map(|w| w.change.event.event.id).collect();
        let tail: Vec<Uuid> = outbox[events + 1..].iter().map(|e| e.event.id).collect();
        assert_eq!(tail, written, "{}", s.name);
        for w in &write.writes {
            assert_eq!(audit_entry_stored(&s, w.change.audit.id).await, 1, "{}", s.name);
        }

        let back = cascade(&s, &t.p, SubtreeAction::Unarchive { at: at(5) }, &[&t.p, &t.c]).await;
        assert!(s.tasks.archive_subtree(&back).await.unwrap(), "{}", s.name);
        assert_eq!(
            states(&s, &[&t.p, &t.c, &t.g]).await,
            [(None, 3), (None, 3), (Some(at(1)), 2)],
            "{}",
            s.name
        );
    }
}

/// How many audit entries and outbox events the project has.
async fn recorded(s: &Store, project: Uuid) -> (u64, usize) {
    (
        audit_entries(s, project).await,
        outbox_events_of(s, project).await.len(),
    )
}

#[tokio::test]
async fn a_cascade_is_all_or_nothing() {
    for s in stores().await {
        let t = subtree(&s).await;
        let all = [&t.p, &t.c, &t.g];
        let before = recorded(&s, t.project.id).await;
        let archive = SubtreeAction::Archive { at: at(5) };

        // A descendant the caller did not know of (G): nothing is written.
        let partial = cascade(&s, &t.p, archive, &[&t.p, &t.c]).await;
        assert!(!s.tasks.archive_subtree(&partial).await.unwrap(), "{}", s.name);
        assert_eq!(states(&s, &all).await, [(None, 1); 3], "{}", s.name);

        // A descendant changed since it was read (C at another version): nothing is written.
        let stale = cascade(&s, &t.p, archive, &all).await;
        save(&s, &t.c, |_| {}).await;
        assert!(!s.tasks.archive_subtree(&stale).await.unwrap(), "{}", s.name);
        assert_eq!(
            states(&s, &all).await,
            [(None, 1), (None, 2), (None, 1)],
            "{}",
            s.name
        );
        let before = (before.0 + 1, before.1 + 1); // the save's own change

        // The database failing on the last row of the write: the error is the answer, and
        // the parent and the first child are unchanged too.
        fail_updates_of(&s, t.g.id).await;
        let doomed = cascade(&s, &t.p, archive, &all).await;
        assert!(s.tasks.archive_subtree(&doomed).await.is_err(), "{}", s.name);
        assert_eq!(
            states(&s, &all).await,
            [(None, 1), (None, 2), (None, 1)],
            "{}",
            s.name
        );
        assert_eq!(
            recorded(&s, t.project.id).await,
            before,
            "{}: no entry, no event",
            s.name
        );
        // Unknown project: NotFound.
        let mut lost = cascade(&s, &t.o, archive, &[&t.o]).await;
        lost.project_id = Uuid::new_v4();
        assert!(
            matches!(s.tasks.archive_subtree(&lost).await, Err(StoreError::NotFound)),
            "{}",
            s.name
        );
    }
}

/// More tasks than one statement writes (500): the write goes in chunks, still all or
/// nothing, each task its entry and event.
#[tokio::test]
async fn a_cascade_larger_than_one_statement_is_written_whole() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let project = project(&s, "BIG", owner).await;
        let root = create_task(&s, task_value(&project, owner, "Root"), &[]).await;
        let mut tasks = vec![root.clone()];
        for n in 0..520 {
            let mut child = task_value(&project, owner, &format!("Child {n}"));
            child.parent_id = Some(root.id);
            tasks.push(create_task(&s, child, &[]).await);
        }
        let all: Vec<&Task> = tasks.iter().collect();
        let before = recorded(&s, project.id).await;
        // The last one left out: the settled check refuses the whole write.
        let short = cascade(
            &s,
            &root,
            SubtreeAction::Archive { at: at(5) },
            &all[..all.len() - 1],
        )
        .await;
        assert!(!s.tasks.archive_subtree(&short).await.unwrap(), "{}", s.name);
        assert_eq!(recorded(&s, project.id).await, before, "{}", s.name);
        assert!(
            s.tasks
                .find(root.id)
                .await
                .unwrap()
                .unwrap()
                .archived_at
                .is_none(),
            "{}",
            s.name
        );
        let whole = cascade(&s, &root, SubtreeAction::Archive { at: at(5) }, &all).await;
        assert!(s.tasks.archive_subtree(&whole).await.unwrap(), "{}", s.name);
        assert!(
            states(&s, &all).await.iter().all(|st| *st == (Some(at(5)), 2)),
            "{}",
            s.name
        );
        assert_eq!(
            recorded(&s, project.id).await,
            (before.0 + 521, before.1 + 521),
            "{}",
            s.name
        );
    }
}
