//! The domain's plain types: events, reports and the resume point. No I/O, no rules.
//!
//! Everything that is *recorded* lives here, so that the code which produces facts (`engine`,
//! `validate`, `backup`), the code which decides (`aggregate`), the code which persists (`store`)
//! and the code which shows them (`api`) share one vocabulary without importing each other. The
//! user's request ([`crate::spec`]) and its addresses ([`crate::redis_url`]) are plain types of the
//! same layer; they stay top-level modules because everything reads them.

pub mod acl;
pub mod audit;
pub mod dry_run;
pub mod event;
pub mod lease;
pub mod report;
pub mod server;

pub use audit::{ChainLink, Digest32};
pub use event::{
    AggregateType, BackupDb, BackupDetails, Event, EventKind, EventWire, Link, PriorTransfer,
    RelayTargetSettings, ResumeKind, ResumePoint, ShardRef, StoredBackup,
};
pub use lease::{LeaseHolder, LeaseOwner, LeaseVerdict, BOOKKEEPING_PREFIX, LEASE_KEY};
pub use report::{
    CheckResult, CheckStatus, Difference, ProblemKey, ReportStatus, ValidationReport,
    VerificationReport,
};
pub use server::ServerSummary;
