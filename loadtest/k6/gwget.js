// The gateway group's fixed-rate latency run: the same small GET at a fixed
// arrival rate (no coordinated omission), direct to the echo upstream, via
// nginx, or via the gateway (then with the workspace's Host).
//
// Env: URL (full URL), HOST (Host header, optional), RATE (per s), DURATION ('10s').
import http from 'k6/http';
import { check } from 'k6';
import { summaryTo } from './lib.js';

const RATE = Number(__ENV.RATE || 500);
const PARAMS = __ENV.HOST ? { headers: { Host: __ENV.HOST } } : {};

export const options = {
  scenarios: {
    get: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '10s',
      preAllocatedVUs: Math.max(20, Math.ceil(RATE / 20)),
      maxVUs: Math.max(100, Math.ceil(RATE / 2)),
    },
  },
  thresholds: {
    checks: ['rate==1'],
    dropped_iterations: ['count==0'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

export default function () {
  check(http.get(__ENV.URL, PARAMS), { 'get: 200 from the upstream': (r) => r.status === 200 && String(r.body).length === 64 });
}

export function handleSummary(data) {
  return summaryTo(data);
}
