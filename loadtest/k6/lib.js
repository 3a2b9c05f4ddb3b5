// Shared helpers of the k6 scenarios: configuration from the environment,
// request helpers, and the response-shape checks of the api contract
// (issue 3: the old system's fields plus job_id and status_url).
import http from 'k6/http';
import { check, sleep } from 'k6';

export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const KEY = __ENV.API_KEY || '';
export const JSON_HEADERS = { 'X-API-Key': KEY, 'Content-Type': 'application/json' };
export const KEY_HEADERS = { 'X-API-Key': KEY };

export const TERMINAL = ['succeeded', 'failed', 'superseded', 'dead'];

export function parse(res) {
  try {
    return res.json();
  } catch (_) {
    return null;
  }
}

function has(doc, fields) {
  return doc !== null && typeof doc === 'object' && fields.every((f) => doc[f] !== undefined && doc[f] !== null);
}

// POST /session/create -> 202 with uuid, user_id, status, workspace_url, created_at, job_id, status_url.
export function checkCreated(res, userId) {
  const doc = parse(res);
  const ok = check(res, {
    'create: 202': (r) => r.status === 202,
    'create: old fields + job_id, status_url': () =>
      has(doc, ['uuid', 'user_id', 'status', 'workspace_url', 'created_at', 'job_id', 'status_url']),
    'create: user_id echoed': () => doc !== null && doc.user_id === userId,
    'create: workspace_url names the uuid': () => doc !== null && String(doc.workspace_url).includes(String(doc.uuid)),
  });
  return ok ? doc : null;
}

// POST /session/{uuid}/{action} -> 202 with uuid, action, status, message, job_id, status_url.
export function checkCommand(res, uuid, label) {
  const doc = parse(res);
  const ok = check(res, {
    [`${label}: 202`]: (r) => r.status === 202,
    [`${label}: old fields + job_id, status_url`]: () =>
      has(doc, ['uuid', 'action', 'status', 'message', 'job_id', 'status_url']),
    [`${label}: uuid echoed`]: () => doc !== null && doc.uuid === uuid,
  });
  return ok ? doc : null;
}

// DELETE /session/{uuid} -> 202 with uuid, status "terminating", job_id, status_url.
export function checkDeleting(res, uuid) {
  const doc = parse(res);
  const ok = check(res, {
    'delete: 202': (r) => r.status === 202,
    'delete: uuid, status, job_id, status_url': () => has(doc, ['uuid', 'status', 'job_id', 'status_url']),
    'delete: status terminating': () => doc !== null && doc.status === 'terminating',
  });
  return ok ? doc : null;
}

// GET /session/{uuid} -> the old shape.
export function checkSession(res, uuid, wantStatus, wantReplicas) {
  const doc = parse(res);
  return check(res, {
    'session: 200': (r) => r.status === 200,
    'session: old shape': () =>
      has(doc, ['uuid', 'session', 'replicas', 'queue_length', 'timestamp']) &&
      has(doc.session, ['user_id', 'status', 'created_at', 'last_activity']),
    [`session: status ${wantStatus}`]: () => doc !== null && doc.uuid === uuid && doc.session && doc.session.status === wantStatus,
    [`session: replicas ${wantReplicas}`]: () => doc !== null && doc.replicas === wantReplicas,
  });
}

// Polls GET /jobs/{id} until the job is terminal or `timeoutS` passes; returns the last document.
export function waitJob(jobId, timeoutS) {
  const deadline = Date.now() + timeoutS * 1000;
  let doc = null;
  while (Date.now() < deadline) {
    const res = http.get(`${BASE}/jobs/${jobId}`, { headers: KEY_HEADERS, tags: { name: 'GET /jobs/{id}' } });
    doc = parse(res);
    const shaped = check(res, {
      'job: 200': (r) => r.status === 200,
      'job: state, command, attempts': () => has(doc, ['state', 'command', 'attempts']),
    });
    if (!shaped) return doc;
    if (TERMINAL.includes(doc.state)) return doc;
    sleep(0.05);
  }
  return doc;
}

// k6 writes its summary as JSON to the file the harness names.
export function summaryTo(data) {
  const out = {};
  if (__ENV.SUMMARY_OUT) out[__ENV.SUMMARY_OUT] = JSON.stringify(data);
  out.stdout = `k6 done: ${data.metrics.iterations ? data.metrics.iterations.values.count : 0} iterations\n`;
  return out;
}
