// jest global set-up: a directory where the first suite that needs the Ceph gateway publishes it
// for every worker (spec/helpers/ceph-shared.ts), and one where every process a test starts is
// recorded (spec/helpers/children.ts) for the check in spec/global-teardown.js; nothing is started here.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function globalSetup() {
  process.env.REGISTRY_TEST_CEPH_DIR = mkdtempSync(join(tmpdir(), 'ceph-shared-'));
  process.env.REGISTRY_TEST_CHILDREN_DIR = mkdtempSync(join(tmpdir(), 'test-children-'));
  process.env.REGISTRY_TEST_JEST_PID = String(process.pid);
}
