// Moved to src/tools/ with the process cluster that needs it; the tests import it from here.
export * from '../../src/tools/free-port.ts';
