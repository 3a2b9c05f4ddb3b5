// Scenarios 2 and 3 (latency part): commands against existing sessions at
// a fixed arrival rate, so latency is measured without coordinated omission.
// Used at a high rate with workers stopped (api latency) and at 200/s with
// workers running (the harness then reads end-to-end latency from the job
// records).
//
// Env: BASE_URL, API_KEY, SESSIONS (file, one uuid per line), RATE (per s),
// DURATION ('15s'), P99_MS (threshold on request p99).
import http from 'k6/http';
import { BASE, KEY_HEADERS, checkCommand, summaryTo } from './lib.js';

const sessions = open(__ENV.SESSIONS).split('\n').filter((s) => s.length > 0);
const RATE = Number(__ENV.RATE || 200);
const P99_MS = Number(__ENV.P99_MS || 5);

export const options = {
  scenarios: {
    enqueue: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '15s',
      preAllocatedVUs: Math.max(50, Math.ceil(RATE / 10)),
      maxVUs: Math.max(200, Math.ceil(RATE / 2)),
    },
  },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    dropped_iterations: ['count==0'],
    http_req_duration: [`p(99)<${P99_MS}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

export default function () {
  // Each session gets sleep and wake in turn, spread over all sessions.
  const i = (__VU * 7919 + __ITER * 104729) % sessions.length;
  const uuid = sessions[i];
  const action = (__ITER + __VU) % 2 === 0 ? 'sleep' : 'wake';
  checkCommand(http.post(`${BASE}/session/${uuid}/${action}`, null, { headers: KEY_HEADERS, tags: { name: 'POST /session/{uuid}/{action}' } }), uuid, action);
}

export function handleSummary(data) {
  return summaryTo(data);
}
