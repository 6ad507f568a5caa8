// The slice of better-sqlite3's API that RawSqlite.ts uses (the package ships no types of its own).
declare module "better-sqlite3" {
  const Database: new (file: string, options?: { readonly fileMustExist?: boolean }) => import("./RawSqlite.js").RawDb
  export default Database
}
