// Scenario 1, lifecycle: each virtual user creates a session, polls the job
// to success, sleeps it, wakes it and deletes it, checking the shape of
// every response and the session state after every job. Zero errors allowed.
//
// Env: BASE_URL, API_KEY, VUS (20), ITERATIONS per VU (2), JOB_TIMEOUT_S (60).
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import { BASE, JSON_HEADERS, KEY_HEADERS, checkCommand, checkCreated, checkDeleting, checkSession, summaryTo, waitJob } from './lib.js';

const jobSeconds = new Trend('lifecycle_job_duration', true);
const lifecycleErrors = new Counter('lifecycle_errors');
const JOB_TIMEOUT_S = Number(__ENV.JOB_TIMEOUT_S || 60);

export const options = {
  scenarios: {
    lifecycle: {
      executor: 'per-vu-iterations',
      vus: Number(__ENV.VUS || 20),
      iterations: Number(__ENV.ITERATIONS || 2),
      maxDuration: __ENV.MAX_DURATION || '5m',
    },
  },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    lifecycle_errors: ['count==0'],
    'http_req_duration{name:POST /session/create}': ['p(99)<250'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

function step(label, jobId, command) {
  const t0 = Date.now();
  const job = waitJob(jobId, JOB_TIMEOUT_S);
  jobSeconds.add(Date.now() - t0, { command });
  const ok = check(job, { [`${label}: job succeeded`]: (j) => j !== null && j.state === 'succeeded' });
  if (!ok) lifecycleErrors.add(1, { step: label });
  return ok;
}

export default function () {
  const userId = `lifecycle-${__VU}-${__ITER}-${Date.now()}@bench.example.com`;
  const created = checkCreated(
    http.post(`${BASE}/session/create`, JSON.stringify({ user_id: userId }), { headers: JSON_HEADERS, tags: { name: 'POST /session/create' } }),
    userId,
  );
  if (!created) return lifecycleErrors.add(1, { step: 'create' });
  const uuid = created.uuid;
  const get = () => http.get(`${BASE}/session/${uuid}`, { headers: KEY_HEADERS, tags: { name: 'GET /session/{uuid}' } });
  if (!step('create', created.job_id, 'create')) return;
  checkSession(get(), uuid, 'running', 1);

  for (const [action, status, replicas] of [['sleep', 'sleeping', 0], ['wake', 'running', 1]]) {
    const doc = checkCommand(http.post(`${BASE}/session/${uuid}/${action}`, null, { headers: KEY_HEADERS, tags: { name: `POST /session/{uuid}/${action}` } }), uuid, action);
    if (!doc) return lifecycleErrors.add(1, { step: action });
    if (!step(action, doc.job_id, action)) return;
    checkSession(get(), uuid, status, replicas);
  }

  const del = checkDeleting(http.del(`${BASE}/session/${uuid}`, null, { headers: KEY_HEADERS, tags: { name: 'DELETE /session/{uuid}' } }), uuid);
  if (!del) return lifecycleErrors.add(1, { step: 'delete' });
  if (!step('delete', del.job_id, 'delete')) return;
  const after = http.get(`${BASE}/session/${uuid}`, {
    headers: KEY_HEADERS,
    tags: { name: 'GET /session/{uuid}' },
    responseCallback: http.expectedStatuses(200, 404),
  });
  check(after, {
    'deleted: gone or marked deleted': (r) =>
      r.status === 404 || (r.status === 200 && r.json('session.status') === 'deleted'),
  });
}

export function handleSummary(data) {
  return summaryTo(data);
}
