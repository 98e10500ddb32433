"""The contract flow through the generated Python client (openapi-python-client).

Run by scripts/contract-check.sh with the generated package `keel_client` on PYTHONPATH and
KEEL_URL set to a running keel. Each step uses the client's own functions and models, so a
renamed operation, a missing schema name or a wrong response model fails here.
"""

import os
import sys
import uuid

from keel_client import AuthenticatedClient, Client
from keel_client.api.auth import register
from keel_client.api.projects import create_project
from keel_client.api.tasks import create_task, get_task, list_project_tasks
from keel_client.models import (
    AuthView,
    CreateProjectBody,
    CreateTaskBody,
    ErrorBody,
    ProjectView,
    RegisterBody,
    TaskPage,
    TaskView,
)


def check(condition: bool, what: str) -> None:
    if not condition:
        sys.exit(f"python client: {what}")


def main() -> None:
    base = os.environ["KEEL_URL"]
    anonymous = Client(base_url=base, raise_on_unexpected_status=True)

    registered = register.sync_detailed(
        client=anonymous,
        body=RegisterBody(
            email=f"py-{uuid.uuid4().hex[:12]}@example.com", password="Correct-h0rse", name="Py Client"
        ),
    )
    check(registered.status_code == 201, f"register answered {registered.status_code}")
    check(isinstance(registered.parsed, AuthView), f"register gave {registered.parsed!r}")
    assert isinstance(registered.parsed, AuthView)
    user = AuthenticatedClient(
        base_url=base, token=registered.parsed.access_token, raise_on_unexpected_status=True
    )

    project = create_project.sync(client=user, body=CreateProjectBody(key="PYC", name="Python client"))
    check(isinstance(project, ProjectView), f"createProject gave {project!r}")
    assert isinstance(project, ProjectView)

    task = create_task.sync(id=project.id, client=user, body=CreateTaskBody(title="Made by the Python client"))
    check(isinstance(task, TaskView), f"createTask gave {task!r}")
    assert isinstance(task, TaskView)
    check(task.identifier == "PYC-1", f"the task is {task.identifier}")

    fetched = get_task.sync(id="PYC-1", client=user)
    check(isinstance(fetched, TaskView), f"getTask gave {fetched!r}")
    assert isinstance(fetched, TaskView)
    check(fetched.id == task.id and fetched.title == task.title, "getTask by identifier found another task")

    page = list_project_tasks.sync(id=project.id, client=user)
    check(isinstance(page, TaskPage), f"listProjectTasks gave {page!r}")
    assert isinstance(page, TaskPage)
    check([type(t) for t in page.data] == [TaskView], "the page's items are not TaskView")
    check(page.data[0].id == task.id, "the page lists another task")
    check(page.pagination.next_cursor is None, "a one-task list has a next page")

    # No token: the error model, as a client reads it.
    refused = get_task.sync_detailed(id="PYC-1", client=anonymous)  # type: ignore[arg-type]
    check(refused.status_code == 401, f"getTask without a token answered {refused.status_code}")
    check(isinstance(refused.parsed, ErrorBody), f"the 401 parsed as {refused.parsed!r}")
    assert isinstance(refused.parsed, ErrorBody)
    check(refused.parsed.code == "UNAUTHORIZED", f"the 401's code is {refused.parsed.code}")
    check(refused.parsed.path == "/api/v1/tasks/PYC-1", f"the 401's path is {refused.parsed.path}")
    check(bool(refused.parsed.request_id), "the 401 has no requestId")

    print("python client: register, createProject, createTask, getTask(KEY-1), listProjectTasks, 401 as ErrorBody: ok")


if __name__ == "__main__":
    main()
