import { Codes, VnmcError } from "../diagnostics.js";

/** A command-line mistake: exit status 2. */
export class UsageError extends VnmcError {
  constructor(message: string) {
    super(Codes.USAGE, message, "usage");
  }
}
