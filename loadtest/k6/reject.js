// Scenario 4: rejected requests under load. Wrong API keys (401) against
// the benchmark api, and the right key against an api with a low rate limit
// (429 once the burst is spent). Every rejection must be the JSON error
// shape, 429s must carry Retry-After and RateLimit-* headers, and both must
// stay fast. (The harness checks, from Redis, that no rejected request
// reached the jobs stream.)
//
// Env: BASE_URL (benchmark api), LIMITED_URL (low-limit api), API_KEY,
// SESSION (an existing uuid), RATE (per s, each scenario), DURATION, P99_MS,
// MAX_ACCEPTED (202s the limit may let through: burst + rate x duration).
import http from 'k6/http';
import { check } from 'k6';
import { BASE, KEY, summaryTo } from './lib.js';

const LIMITED = __ENV.LIMITED_URL || BASE;
const SESSION = __ENV.SESSION || '0fa6debc';
const MAX_ACCEPTED = Number(__ENV.MAX_ACCEPTED || 120);
const RATE = Number(__ENV.RATE || 300);
const P99_MS = Number(__ENV.P99_MS || 5);
const scenario = (exec) => ({
  executor: 'constant-arrival-rate',
  exec,
  rate: RATE,
  timeUnit: '1s',
  duration: __ENV.DURATION || '10s',
  preAllocatedVUs: 20,
  maxVUs: 100,
});

export const options = {
  scenarios: { badkey: scenario('badKey'), overlimit: scenario('overLimit') },
  thresholds: {
    checks: ['rate==1'],
    'http_req_duration{scenario:badkey}': [`p(99)<${P99_MS}`],
    'http_req_duration{scenario:overlimit}': [`p(99)<${P99_MS}`],
    'http_reqs{status:202}': [`count<=${MAX_ACCEPTED}`],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

const rejected = http.expectedStatuses(401, 429, 202);

function errorShape(r) {
  try {
    const e = r.json('error');
    return typeof e.code === 'string' && typeof e.message === 'string';
  } catch (_) {
    return false;
  }
}

export function badKey() {
  const r = http.post(`${BASE}/session/${SESSION}/sleep`, null, {
    headers: { 'X-API-Key': `wrong-${__ITER % 13}` },
    responseCallback: rejected,
  });
  check(r, {
    'badkey: 401': (x) => x.status === 401,
    'badkey: error JSON': errorShape,
  });
}

export function overLimit() {
  // The low-limit api trusts 127.0.0.1 as a proxy: this client gets its own per-IP bucket
  // instead of draining the one the benchmark api shares in Redis.
  const headers = { 'X-API-Key': KEY, 'X-Forwarded-For': '198.51.100.7' };
  const r = http.post(`${LIMITED}/session/${SESSION}/sleep`, null, { headers, responseCallback: rejected });
  check(r, {
    'overlimit: 429 (or 202/404 inside the burst)': (x) => x.status === 429 || x.status === 202 || x.status === 404,
    'overlimit: 429 carries Retry-After and RateLimit-*': (x) =>
      x.status !== 429 ||
      (x.headers['Retry-After'] !== undefined && x.headers['Ratelimit-Limit'] !== undefined && x.headers['Ratelimit-Remaining'] !== undefined && x.headers['Ratelimit-Reset'] !== undefined),
    'overlimit: error JSON when rejected': (x) => x.status === 202 || errorShape(x),
  });
}

export function handleSummary(data) {
  return summaryTo(data);
}
