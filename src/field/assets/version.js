// The app's version: a hash of its files, written by the gateway that serves them.
export const VERSION = "%VERSION%";
