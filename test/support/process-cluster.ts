// The cluster harness moved to src/tools/ because `npm run jepsen` (a product tool) uses
// it; the tests keep importing it from here.
export * from '../../src/tools/process-cluster.ts';
