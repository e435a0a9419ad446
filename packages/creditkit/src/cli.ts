#!/usr/bin/env node
// The creditkit CLI, run in an app's root: `npx creditkit <command>` (commands.ts). Known failures
// print one line and exit with their documented code; anything else prints its stack, exit 1.
import { main } from './commands.ts';
import { CliError, EXIT } from './project.ts';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof CliError) {
      process.stderr.write(`creditkit: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`creditkit: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = EXIT.problems;
    }
  },
);
