//! The search index: what it finds, in which order, and that it follows every change,
//! deletes by cascade included.

use keel_domain::tracking::ports::{CommentRepository, ProjectRepository, TaskRepository};
use keel_domain::tracking::search::{
    COMMENT_SCORE, IDENTIFIER_SCORE, SearchIndex, SearchKinds, SearchQuery, SearchTerms, TITLE_SCORE,
};
use keel_domain::tracking::{Comment, CommentBody, Scope, TaskTitle};
use keel_infrastructure::tracking::SeaOrmSearchIndex;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::common::*;

fn search_for(q: &str, scope: Scope) -> SearchQuery {
    SearchQuery {
        scope,
        projects: None,
        terms: SearchTerms::parse(q),
        kinds: SearchKinds::default(),
        after: None,
        limit: 10,
    }
}

#[tokio::test]
async fn the_index_ranks_and_follows_creates_updates_and_cascading_deletes() {
    for s in stores().await {
        let index = SeaOrmSearchIndex::new(s.db.clone());
        let owner = user(&s, "Owner").await;
        let p = project(&s, "SRC", owner).await;
        let plan = create_task(&s, task_value(&p, owner, "Migration plan"), &[]).await;
        let other = create_task(&s, task_value(&p, owner, "Other"), &[]).await;
        let comment = Comment {
            id: Uuid::new_v4(),
            task_id: other.id,
            project_id: p.id,
            author_id: owner,
            body: CommentBody::parse("Migrating soon").unwrap(),
            created_at: at(1),
            updated_at: at(1),
            version: 1,
        };
        s.comments
            .create(&comment, &audit("comment.created", Some(p.id)))
            .await
            .unwrap();
        let scope = Scope::Project(p.id);
        let ranked: Vec<(i32, Uuid, bool)> = index
            .search(&search_for("MIGR", scope))
            .await
            .unwrap()
            .iter()
            .map(|h| (h.score, h.task.id, h.comment.is_some()))
            .collect();
        assert_eq!(
            ranked,
            [(TITLE_SCORE, plan.id, false), (COMMENT_SCORE, other.id, true)],
            "{}",
            s.name
        );
        let named = index.search(&search_for("src-2", scope)).await.unwrap();
        assert_eq!(
            (named[0].score, named[0].task.id),
            (IDENTIFIER_SCORE, other.id),
            "{}",
            s.name
        );
        // Another user's scope finds nothing.
        let stranger = user(&s, "Stranger").await;
        assert!(
            index
                .search(&search_for("migr", Scope::MemberOf(stranger)))
                .await
                .unwrap()
                .is_empty()
        );

        // An update is indexed in its transaction.
        let mut renamed = plan.clone();
        renamed.title = TaskTitle::parse("Rollout").unwrap();
        assert!(
            s.tasks
                .update(&renamed, None, plan.version, &audit("task.updated", Some(p.id)))
                .await
                .unwrap()
        );
        let after: Vec<Uuid> = index
            .search(&search_for("roll", scope))
            .await
            .unwrap()
            .iter()
            .map(|h| h.task.id)
            .collect();
        assert_eq!(after, [plan.id], "{}", s.name);
        assert!(
            index
                .search(&search_for("migration", scope))
                .await
                .unwrap()
                .iter()
                .all(|h| h.comment.is_some())
        );

        // Deleting the project deletes its tasks and comments by cascade: nothing of them
        // stays in the index (on SQLite, its own tables).
        s.projects
            .delete(p.id, &audit("project.deleted", Some(p.id)))
            .await
            .unwrap();
        if s.name == "sqlite" {
            for table in [
                "task_search",
                "task_search_rows",
                "comment_search",
                "comment_search_rows",
            ] {
                let row =
                    s.db.connection()
                        .query_one_raw(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Sqlite,
                            format!("SELECT count(*) AS n FROM \"{table}\""),
                        ))
                        .await
                        .unwrap()
                        .unwrap();
                assert_eq!(row.try_get::<i64>("", "n").unwrap(), 0, "{table}");
            }
        }
        assert!(
            index
                .search(&search_for("migr", Scope::All))
                .await
                .unwrap()
                .is_empty(),
            "{}",
            s.name
        );
    }
}

/// Reading the newest tasks first (PostgreSQL's window) is a shortcut, never another
/// answer: pages of every size, followed by their cursors, list the same hits in the same
/// order whatever the window — one task, a few, or more than there are — and that order is
/// the ranking: title matches, then description matches, each newest first. The caller's
/// tasks are spread over two projects (the window merges each project's newest, or reads
/// their newest ids when there are more projects than it merges), beside a third project
/// they are no member of, full of matches that must never show; a token limited to one
/// project sees that project's share only.
#[tokio::test]
async fn every_window_gives_the_same_ranked_pages() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let stranger = user(&s, "Stranger").await;
        let projects = [project(&s, "WIN", owner).await, project(&s, "WIX", owner).await];
        let foreign = project(&s, "OUT", stranger).await;
        for n in 1..=12 {
            let mut task = task_value(&foreign, stranger, &format!("Alpha elsewhere {n}"));
            task.created_at = at(100 + n);
            task.updated_at = at(100 + n);
            create_task(&s, task, &[]).await;
        }
        let (mut titled, mut described) = (Vec::new(), Vec::new());
        for n in 1..=30 {
            let p = &projects[usize::from(n % 7 < 2)];
            let title = if n % 3 == 0 {
                format!("Alpha task {n}")
            } else {
                format!("Task {n}")
            };
            let mut task = task_value(p, owner, &title);
            task.created_at = at(n);
            task.updated_at = at(n);
            if n % 5 == 0 {
                task.description = Some("Mentions the alphabet".to_owned());
            }
            let task = create_task(&s, task, &[]).await;
            match (n % 3 == 0, n % 5 == 0) {
                (true, _) => titled.push((task.id, task.project_id)),
                (false, true) => described.push((task.id, task.project_id)),
                _ => {}
            }
        }
        let ranked: Vec<(Uuid, Uuid)> = titled
            .iter()
            .rev()
            .chain(described.iter().rev())
            .copied()
            .collect();
        assert_eq!(ranked.len(), 14);
        let in_first: Vec<Uuid> = ranked
            .iter()
            .filter(|(_, p)| *p == projects[0].id)
            .map(|(id, _)| *id)
            .collect();
        assert!(!in_first.is_empty() && in_first.len() < ranked.len());
        let all: Vec<Uuid> = ranked.iter().map(|(id, _)| *id).collect();
        for (limit_to, expected) in [(None, &all), (Some(vec![projects[0].id, foreign.id]), &in_first)] {
            for (window, merged) in [(1, 32), (2, 1), (5, 32), (5, 1), (1000, 32), (1000, 0)] {
                let index = SeaOrmSearchIndex::with_reads(s.db.clone(), window, merged);
                for limit in [1, 4, 20] {
                    let mut query = search_for("alph", Scope::MemberOf(owner));
                    query.projects = limit_to.clone();
                    query.limit = limit;
                    let mut seen = Vec::new();
                    loop {
                        let page = index.search(&query).await.unwrap();
                        assert!(page.len() as u64 <= limit);
                        seen.extend(page.iter().map(|h| h.task.id));
                        assert!(
                            seen.len() <= expected.len(),
                            "{}: the pages repeat: {seen:?}",
                            s.name
                        );
                        match page.last() {
                            Some(last) if page.len() as u64 == limit => query.after = Some(last.position()),
                            _ => break,
                        }
                    }
                    assert_eq!(
                        &seen, expected,
                        "{}: window {window} (merging {merged}), pages of {limit}, limited to {limit_to:?}",
                        s.name
                    );
                }
            }
        }
    }
}

/// A member of no project (or a token limited to projects they are no member of) finds
/// nothing, beside another user's matching tasks — and the search still answers.
#[tokio::test]
async fn a_member_of_no_project_finds_nothing() {
    for s in stores().await {
        let owner = user(&s, "Owner").await;
        let loner = user(&s, "Loner").await;
        let p = project(&s, "NOP", owner).await;
        create_task(&s, task_value(&p, owner, "Alpha plan"), &[]).await;
        let index = SeaOrmSearchIndex::new(s.db.clone());
        assert!(
            index
                .search(&search_for("alpha", Scope::MemberOf(loner)))
                .await
                .unwrap()
                .is_empty(),
            "{}",
            s.name
        );
        let mut limited = search_for("alpha", Scope::MemberOf(owner));
        limited.projects = Some(vec![Uuid::new_v4()]);
        assert!(index.search(&limited).await.unwrap().is_empty(), "{}", s.name);
        limited.projects = Some(vec![p.id]);
        assert_eq!(index.search(&limited).await.unwrap().len(), 1, "{}", s.name);
    }
}
