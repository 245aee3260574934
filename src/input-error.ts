/**
 * Bad input from the user (flags, config, table names): the CLI prints its
 * message alone and exits 2, before anything touched a database.
 */
export class InputError extends Error {}
