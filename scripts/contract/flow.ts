// The contract flow through the generated TypeScript client (@hey-api/openapi-ts).
//
// Compiled with `tsc --strict` by scripts/contract-check.sh next to the generated `gen/`,
// then run with KEEL_URL set to a running keel. Each step uses the SDK's own functions and
// types, so a renamed operation, a missing schema name or a wrong error model fails here
// (at compile time where the types tell, at run time otherwise).

import { createClient } from './gen/client';
import { createProject, createTask, getTask, listProjectTasks, register } from './gen/sdk.gen';
import type { ErrorBody, ProjectView, TaskPage, TaskView } from './gen/types.gen';

// What this script uses of Node's globals (no @types/node needed).
declare const process: { env: Record<string, string | undefined>; exit(code: number): never };

function check(condition: boolean, what: string): asserts condition {
    if (!condition) {
        throw new Error(`typescript client: ${what}`);
    }
}

async function main(): Promise<void> {
    const baseUrl = process.env.KEEL_URL;
    check(baseUrl !== undefined, 'KEEL_URL is not set');
    const anonymous = createClient({ baseUrl });

    const email = `ts-${Math.random().toString(36).slice(2, 14)}@example.com`;
    const registered = await register({
        client: anonymous,
        body: { email, password: 'Correct-h0rse', name: 'Ts Client' },
    });
    check(registered.response.status === 201, `register answered ${registered.response.status}`);
    check(registered.data !== undefined, 'register gave no body');
    const user = createClient({ baseUrl, auth: registered.data.accessToken });

    const created = await createProject({ client: user, body: { key: 'TSC', name: 'TypeScript client' } });
    check(created.data !== undefined, `createProject answered ${created.response.status}`);
    const project: ProjectView = created.data;

    const made = await createTask({
        client: user,
        path: { id: project.id },
        body: { title: 'Made by the TypeScript client' },
    });
    check(made.data !== undefined, `createTask answered ${made.response.status}`);
    const task: TaskView = made.data;
    check(task.identifier === 'TSC-1', `the task is ${task.identifier}`);

    const fetched = await getTask({ client: user, path: { id: 'TSC-1' } });
    check(fetched.response.status === 200 && fetched.data !== undefined, `getTask answered ${fetched.response.status}`);
    check(fetched.data.id === task.id && fetched.data.title === task.title, 'getTask by identifier found another task');

    const listed = await listProjectTasks({ client: user, path: { id: project.id } });
    check(listed.data !== undefined, `listProjectTasks answered ${listed.response.status}`);
    const page: TaskPage = listed.data;
    const first: TaskView | undefined = page.data[0];
    check(page.data.length === 1 && first?.id === task.id, 'the page lists other tasks');
    check(page.pagination.nextCursor === null || page.pagination.nextCursor === undefined, 'a one-task list has a next page');

    // No token: the error model, as a client reads it.
    const refused = await getTask({ client: anonymous, path: { id: 'TSC-1' } });
    check(refused.response.status === 401, `getTask without a token answered ${refused.response.status}`);
    check(refused.error !== undefined, 'the 401 has no error body');
    const error: ErrorBody = refused.error;
    check(error.code === 'UNAUTHORIZED', `the 401's code is ${error.code}`);
    check(error.path === '/api/v1/tasks/TSC-1', `the 401's path is ${error.path}`);
    check(error.requestId.length > 0, 'the 401 has no requestId');

    console.log('typescript client: register, createProject, createTask, getTask(KEY-1), listProjectTasks, 401 as ErrorBody: ok');
}

main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
});
