//! The supervisor's policy, scenario by scenario: each step is an input at a time
//! (or only the passing of time) and the actions it must produce, in order.

use std::io::ErrorKind;
use std::os::unix::process::ExitStatusExt;

use super::*;

mod property;

const STOP_LIMIT: Duration = Duration::from_secs(10);
const READY_TIMEOUT: Duration = Duration::from_secs(5);

fn policy(mode: Mode) -> Policy {
    Policy {
        mode,
        stop_signal: Signal::TERM,
        stop_limit: STOP_LIMIT,
        ready_timeout: Some(READY_TIMEOUT),
        queue: None,
        health: false,
    }
}

fn exited(code: i32) -> Input {
    Input::Exited(ExitStatus::from_raw(code << 8))
}

fn killed(sig: i32) -> Input {
    Input::Exited(ExitStatus::from_raw(sig))
}

fn view(f: impl FnOnce(&mut View)) -> Input {
    let mut v = View::default();
    f(&mut v);
    Input::Protocol(v)
}

fn active() -> Input {
    view(|v| v.active = true)
}

fn standby() -> Input {
    view(|v| v.standby = true)
}

fn successor() -> Input {
    view(|v| v.successor = Some(Successor::Peer(2)))
}

fn exit_code(actions: &[Action]) -> Option<u8> {
    actions.iter().find_map(|a| match a {
        Action::Exit(exit) => Some(exit.code()),
        _ => None,
    })
}

/// One step: at `ms`, an input (or `None`: time passes), and the actions expected.
type Step = (u64, Option<Input>, Vec<Action>);

/// Runs `steps` and checks each step's actions; returns every action.
fn check(name: &str, mode: Mode, first: Vec<Action>, steps: Vec<Step>) -> Vec<Action> {
    let mut sup = Supervisor::new(policy(mode));
    let drain = |sup: &mut Supervisor| std::iter::from_fn(|| sup.poll_action()).collect::<Vec<_>>();
    let mut all = drain(&mut sup);
    assert_eq!(all, first, "{name}: at the start");
    for (i, (ms, input, expected)) in steps.into_iter().enumerate() {
        let now = Duration::from_millis(ms);
        if sup.poll_timeout().is_some_and(|t| t <= now) {
            sup.handle_timeout(now);
        }
        if let Some(input) = input.clone() {
            sup.handle(now, input);
        }
        let got = drain(&mut sup);
        assert_eq!(got, expected, "{name}: step {i} at {ms} ms: {input:?}");
        all.extend(got);
    }
    all
}

use Action::{
    AcquireSockets, Claim, CompleteHandOver, Forward, Kill, Leave, NotifyReady, OwnSockets,
    PublishRole, PublishState, SetState, Spawn, WatchReadiness,
};

const HAND_OVER: Mode = Mode::HandOver { sockets: false };
const LISTEN: Mode = Mode::HandOver { sockets: true };

fn note(n: Note) -> Action {
    Action::Note(n)
}

fn spawn() -> Action {
    Spawn { term: None }
}

fn claimed(via: &'static str) -> Vec<Action> {
    vec![
        note(Note::Ready { via }),
        Claim,
        note(Note::ClaimSent),
        NotifyReady,
    ]
}

/// The actions at the start, and the steps that start the service: at once in
/// hand-over, once elected in cold standby.
fn service_started(mode: Mode) -> (Vec<Action>, Vec<Step>) {
    match mode {
        HAND_OVER => (vec![spawn()], vec![]),
        _ => (
            vec![Claim, note(Note::Ready { via: "standby" })],
            vec![(0, Some(active()), vec![spawn()])],
        ),
    }
}

#[test]
fn hand_over_exits_0_whatever_the_service_says() {
    for (status, how) in [
        (exited(143), "143"),
        (exited(1), "1"),
        (killed(15), "SIGTERM"),
    ] {
        let all = check(
            &format!("hand-over, service exits {how}"),
            HAND_OVER,
            vec![spawn()],
            vec![
                (0, Some(Input::Spawned), vec![WatchReadiness]),
                (100, Some(Input::Ready("notify")), claimed("notify")),
                (200, Some(active()), vec![]),
                (900, Some(successor()), vec![Action::Signal(Signal::TERM)]),
                (1_000, Some(status), vec![CompleteHandOver]),
                (
                    1_010,
                    Some(Input::Completed),
                    vec![Action::Exit(Exit::HandedOver)],
                ),
            ],
        );
        assert_eq!(exit_code(&all), Some(0));
    }
}

#[test]
fn a_service_that_overruns_the_stop_limit_is_killed_and_the_hand_over_completes() {
    let all = check(
        "hand-over, service ignores SIGTERM",
        HAND_OVER,
        vec![spawn()],
        vec![
            (0, Some(Input::Spawned), vec![WatchReadiness]),
            (100, Some(Input::Ready("tcp")), claimed("tcp")),
            (1_000, Some(successor()), vec![Action::Signal(Signal::TERM)]),
            (10_999, None, vec![]),
            (11_000, None, vec![Kill]),
            (11_001, Some(killed(9)), vec![CompleteHandOver]),
            (
                11_002,
                Some(Input::Completed),
                vec![Action::Exit(Exit::HandedOver)],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(0));
}

#[test]
fn a_service_not_ready_in_time_is_stopped_before_its_instance_leaves() {
    for mode in [HAND_OVER, Mode::ColdStandby] {
        let (first, mut steps) = service_started(mode);
        steps.extend([
            (0, Some(Input::Spawned), vec![WatchReadiness]),
            (4_999, None, vec![]),
            (
                5_000,
                None,
                vec![
                    note(Note::ReadyTimeout {
                        after: READY_TIMEOUT,
                    }),
                    Action::Signal(Signal::TERM),
                ],
            ),
            // Readiness after the deadline changes nothing.
            (5_001, Some(Input::Ready("notify")), vec![]),
            (5_100, Some(exited(0)), vec![Leave]),
            (5_110, Some(Input::Left), vec![Action::Exit(Exit::NotReady)]),
        ]);
        let all = check(&format!("{mode:?}, not ready"), mode, first, steps);
        assert_eq!(exit_code(&all), Some(1));
    }
}

#[test]
fn a_service_that_exits_on_its_own_passes_its_status_through() {
    let all = check(
        "hand-over, exits 3",
        HAND_OVER,
        vec![spawn()],
        vec![
            (0, Some(Input::Spawned), vec![WatchReadiness]),
            (100, Some(Input::Ready("notify")), claimed("notify")),
            (500, Some(exited(3)), vec![Leave]),
            (
                510,
                Some(Input::Left),
                vec![Action::Exit(Exit::OnItsOwn {
                    status: ExitStatus::from_raw(3 << 8),
                    failover: false,
                })],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(3));
}

#[test]
fn a_stop_signal_is_passed_on_and_enforced() {
    // The JVM: 143 after SIGTERM is a clean stop.
    let all = check(
        "hand-over, SIGTERM to handover",
        HAND_OVER,
        vec![spawn()],
        vec![
            (0, Some(Input::Spawned), vec![WatchReadiness]),
            (
                100,
                Some(Input::Signal(Signal::USR1)),
                vec![Action::Signal(Signal::USR1)],
            ),
            (
                200,
                Some(Input::Signal(Signal::TERM)),
                vec![Action::Signal(Signal::TERM)],
            ),
            (10_199, None, vec![]),
            (10_200, None, vec![Kill]),
            (10_201, Some(exited(143)), vec![Leave]),
            (
                10_202,
                Some(Input::Left),
                vec![Action::Exit(Exit::StopAsked {
                    status: ExitStatus::from_raw(143 << 8),
                    stop_signal: Signal::TERM,
                })],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(0));
}

#[test]
fn a_command_that_cannot_start_exits_as_in_a_shell() {
    let all = check(
        "hand-over, no such command",
        HAND_OVER,
        vec![spawn()],
        vec![
            (
                0,
                Some(Input::NotStarted {
                    kind: ErrorKind::NotFound,
                    error: "no such file".into(),
                }),
                vec![note(Note::NotStarted("no such file".into())), Leave],
            ),
            (
                1,
                Some(Input::Left),
                vec![Action::Exit(Exit::NotStarted(ErrorKind::NotFound))],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(127));
}

#[test]
fn listen_takes_the_sockets_owns_them_when_active_and_forwards_after() {
    let all = check(
        "--listen",
        LISTEN,
        vec![AcquireSockets],
        vec![
            (300, Some(Input::SocketsTaken), vec![spawn()]),
            (300, Some(Input::Spawned), vec![WatchReadiness]),
            (400, Some(Input::Ready("notify")), claimed("notify")),
            (500, Some(active()), vec![OwnSockets]),
            (600, Some(active()), vec![]),
            (900, Some(successor()), vec![Action::Signal(Signal::TERM)]),
            (950, Some(exited(0)), vec![CompleteHandOver]),
            (
                960,
                Some(Input::Completed),
                vec![Forward(Successor::Peer(2))],
            ),
            // The engine ends after its goodbye: forwarding goes on.
            (970, Some(Input::CommandFailed("stopped".into())), vec![]),
            (
                5_000,
                Some(Input::Signal(Signal::TERM)),
                vec![Action::Exit(Exit::HandedOver)],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(0));
}

#[test]
fn a_stop_signal_ends_the_wait_for_the_sockets() {
    check(
        "--listen, SIGTERM while waiting",
        LISTEN,
        vec![AcquireSockets],
        vec![
            (
                300,
                Some(Input::Signal(Signal::TERM)),
                vec![note(Note::StoppedWaiting), Leave],
            ),
            // The sockets arriving late start nothing.
            (301, Some(Input::SocketsTaken), vec![]),
            (302, Some(Input::Left), vec![Action::Exit(Exit::Left)]),
        ],
    );
}

#[test]
fn a_cold_standby_runs_its_service_only_while_active() {
    let term = Term {
        token: 7,
        key: "svc/1".into(),
    };
    let elected = view(|v| {
        v.active = true;
        v.term = Some(term.clone());
    });
    let all = check(
        "cold standby",
        Mode::ColdStandby,
        vec![Claim, note(Note::Ready { via: "standby" })],
        vec![
            (10, Some(standby()), vec![NotifyReady]),
            (20, Some(standby()), vec![]),
            (
                1_000,
                Some(elected.clone()),
                vec![Spawn { term: Some(term) }],
            ),
            (1_000, Some(Input::Spawned), vec![WatchReadiness]),
            (
                1_100,
                Some(Input::Ready("notify")),
                vec![note(Note::ServiceReady { via: "notify" })],
            ),
            (2_000, Some(standby()), vec![Action::Signal(Signal::TERM)]),
            // Elected again while the service stops: started again once it has.
            (2_010, Some(active()), vec![]),
            (2_050, Some(exited(143)), vec![Action::Released, spawn()]),
            (2_050, Some(Input::Spawned), vec![WatchReadiness]),
            (3_000, Some(standby()), vec![Action::Signal(Signal::TERM)]),
            (3_010, Some(exited(143)), vec![Action::Released]),
            (4_000, Some(Input::Signal(Signal::TERM)), vec![Leave]),
            (4_010, Some(Input::Left), vec![Action::Exit(Exit::Left)]),
        ],
    );
    assert_eq!(exit_code(&all), Some(0));
}

#[test]
fn an_active_service_that_dies_makes_its_instance_leave_and_fail() {
    let all = check(
        "cold standby, service exits 0 while active",
        Mode::ColdStandby,
        vec![Claim, note(Note::Ready { via: "standby" })],
        vec![
            (1_000, Some(active()), vec![spawn()]),
            (1_000, Some(Input::Spawned), vec![WatchReadiness]),
            (1_500, Some(exited(0)), vec![Leave]),
            (
                1_510,
                Some(Input::Left),
                vec![Action::Exit(Exit::OnItsOwn {
                    status: ExitStatus::from_raw(0),
                    failover: true,
                })],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(1));
}

#[test]
fn asked_to_stop_while_demoted_it_leaves_once_the_service_has_stopped() {
    check(
        "cold standby, SIGTERM during a demotion",
        Mode::ColdStandby,
        vec![Claim, note(Note::Ready { via: "standby" })],
        vec![
            (1_000, Some(active()), vec![spawn()]),
            (1_000, Some(Input::Spawned), vec![WatchReadiness]),
            (2_000, Some(standby()), vec![Action::Signal(Signal::TERM)]),
            (
                2_001,
                Some(Input::Signal(Signal::TERM)),
                vec![Action::Signal(Signal::TERM)],
            ),
            (2_050, Some(exited(143)), vec![Action::Released, Leave]),
            (2_060, Some(Input::Left), vec![Action::Exit(Exit::Left)]),
        ],
    );
}

#[test]
fn a_failed_protocol_stops_the_service_and_exits_70_without_a_goodbye() {
    let failed = view(|v| {
        v.active = true;
        v.failed = Some("socket closed".into());
    });
    for mode in [HAND_OVER, Mode::ColdStandby] {
        let (first, mut steps) = service_started(mode);
        steps.extend([
            (0, Some(Input::Spawned), vec![WatchReadiness]),
            (
                100,
                Some(failed.clone()),
                vec![
                    note(Note::DriverFailed("socket closed".into())),
                    Action::Signal(Signal::TERM),
                ],
            ),
            (101, Some(failed.clone()), vec![]),
            (150, Some(exited(0)), vec![Action::Exit(Exit::DriverFailed)]),
        ]);
        let all = check(&format!("{mode:?}, protocol failed"), mode, first, steps);
        assert_eq!(exit_code(&all), Some(70));
    }
}

#[test]
fn a_hot_standby_is_told_its_role_and_states_both_ways() {
    let leading = view(|v| {
        v.active = true;
        v.leader = Some(1);
    });
    let all = check(
        "hot standby",
        Mode::HotStandby,
        vec![spawn()],
        vec![
            (
                0,
                Some(Input::Spawned),
                vec![
                    PublishRole {
                        active: false,
                        leader: None,
                    },
                    Claim,
                    note(Note::Ready { via: "standby" }),
                    NotifyReady,
                ],
            ),
            (10, Some(standby()), vec![]),
            (
                500,
                Some(leading.clone()),
                vec![PublishRole {
                    active: true,
                    leader: Some(1),
                }],
            ),
            (510, Some(leading), vec![]),
            (
                600,
                Some(Input::Heard(vec![Ok(Said::State(vec![1, 2]))])),
                vec![SetState(vec![1, 2])],
            ),
            (
                700,
                Some(Input::Synced(vec![3])),
                vec![PublishState(vec![3])],
            ),
            (800, Some(exited(0)), vec![Leave]),
            (
                810,
                Some(Input::Left),
                vec![Action::Exit(Exit::OnItsOwn {
                    status: ExitStatus::from_raw(0),
                    failover: true,
                })],
            ),
        ],
    );
    assert_eq!(exit_code(&all), Some(1));
}

/// `--queue`: the supervisor's desk, fed the service's lines and the protocol's
/// checkpoints.
mod queue {
    use std::num::NonZeroUsize;

    use super::*;
    use crate::channel::{Limits, Payload};

    fn queued(window: usize) -> Supervisor {
        let mut p = policy(Mode::HotStandby);
        p.queue = Some(Queue {
            window: NonZeroUsize::new(window).unwrap(),
            limits: Limits {
                tasks: 100,
                bytes: 1 << 20,
            },
        });
        let mut sup = Supervisor::new(p);
        sup.handle(Duration::ZERO, Input::Spawned);
        drain(&mut sup);
        sup
    }

    fn drain(sup: &mut Supervisor) -> Vec<Action> {
        std::iter::from_fn(|| sup.poll_action()).collect()
    }

    fn payload(id: u64) -> Payload {
        Payload::from_json(format!("{{\"n\":{id}}}")).unwrap()
    }

    fn submit(ids: std::ops::RangeInclusive<u64>) -> Input {
        Input::Heard(
            ids.map(|id| {
                Ok(Said::Submit {
                    id,
                    payload: payload(id),
                })
            })
            .collect(),
        )
    }

    fn answers(said: Vec<Said>) -> Input {
        Input::Heard(said.into_iter().map(Ok).collect())
    }

    /// Active (or not) with these checkpoints.
    fn at(active: bool, checkpoint: u64, held: Option<u64>) -> Input {
        view(|v| {
            v.active = active;
            v.standby = !active;
            v.checkpoint = checkpoint;
            v.held = held;
        })
    }

    fn run(id: u64) -> Action {
        Action::Run {
            id,
            payload: payload(id),
        }
    }

    fn told(checkpoint: u64, held: Option<u64>) -> Action {
        Action::TellCheckpoints { checkpoint, held }
    }

    fn role(active: bool) -> Action {
        PublishRole {
            active,
            leader: None,
        }
    }

    /// One step at `ms`: the input, and the actions it must produce.
    fn step(sup: &mut Supervisor, ms: u64, input: Option<Input>, expected: Vec<Action>) {
        let now = Duration::from_millis(ms);
        if sup.poll_timeout().is_some_and(|t| t <= now) {
            sup.handle_timeout(now);
        }
        let what = format!("{input:?}");
        if let Some(input) = input {
            sup.handle(now, input);
        }
        assert_eq!(drain(sup), expected, "at {ms} ms: {what}");
    }

    #[test]
    fn tasks_go_out_only_while_active_and_a_batch_of_answers_is_one_checkpoint() {
        let mut sup = queued(2);
        step(&mut sup, 0, Some(submit(1..=3)), vec![]);
        step(&mut sup, 1, Some(at(false, 0, None)), vec![told(0, None)]);
        step(
            &mut sup,
            2,
            Some(at(true, 0, Some(0))),
            vec![role(true), told(0, Some(0)), run(1), run(2)],
        );
        step(
            &mut sup,
            3,
            Some(answers(vec![Said::Done(2), Said::Done(1)])),
            vec![Action::Checkpoint(2)],
        );
        // 2 awaits its acknowledgement: with 3 handed out, the window is full.
        step(
            &mut sup,
            4,
            Some(at(true, 2, Some(1))),
            vec![told(2, Some(1)), run(3)],
        );
        step(
            &mut sup,
            5,
            Some(at(true, 2, Some(2))),
            vec![told(2, Some(2))],
        );
        // Late answers for what a checkpoint covers are taken; a task never
        // handed out is refused.
        step(&mut sup, 6, Some(answers(vec![Said::Done(1)])), vec![]);
        step(
            &mut sup,
            7,
            Some(answers(vec![Said::Done(9)])),
            vec![Action::TellError {
                error: "done: task 9 is not running".into(),
                line: String::new(),
            }],
        );
        // A retry is handed out again when its pause is over.
        step(&mut sup, 8, Some(answers(vec![Said::Retry(3)])), vec![]);
        step(&mut sup, 18, None, vec![run(3)]);
    }

    #[test]
    fn a_task_finished_after_the_term_was_lost_is_recorded_on_the_next() {
        let mut sup = queued(1);
        step(&mut sup, 0, Some(submit(1..=2)), vec![]);
        step(
            &mut sup,
            1,
            Some(at(true, 0, Some(0))),
            vec![role(true), told(0, Some(0)), run(1)],
        );
        // The term is lost (etcd paused) while 1 runs; the answer comes after.
        step(
            &mut sup,
            2,
            Some(at(false, 0, None)),
            vec![role(false), told(0, None)],
        );
        step(&mut sup, 3, Some(answers(vec![Said::Done(1)])), vec![]);
        // Elected again, nobody having done 1: recorded now, and the queue moves.
        step(
            &mut sup,
            4,
            Some(at(true, 0, Some(0))),
            vec![role(true), told(0, Some(0)), Action::Checkpoint(1)],
        );
        step(
            &mut sup,
            5,
            Some(at(true, 1, Some(1))),
            vec![told(1, Some(1)), run(2)],
        );
    }

    #[test]
    fn a_stop_leaves_once_the_standbys_hold_what_was_done_or_at_the_stop_limit() {
        for held in [true, false] {
            let mut sup = queued(1);
            step(&mut sup, 0, Some(submit(1..=2)), vec![]);
            step(
                &mut sup,
                1,
                Some(at(true, 0, Some(0))),
                vec![role(true), told(0, Some(0)), run(1)],
            );
            step(
                &mut sup,
                2,
                Some(Input::Signal(Signal::TERM)),
                vec![Action::Signal(Signal::TERM)],
            );
            // The service finishes 1 and exits: nothing more goes out.
            step(
                &mut sup,
                3,
                Some(answers(vec![Said::Done(1)])),
                vec![Action::Checkpoint(1)],
            );
            step(&mut sup, 4, Some(exited(143)), vec![]);
            assert_eq!(
                sup.phase(),
                Phase::Settling(Exit::StopAsked {
                    status: ExitStatus::from_raw(143 << 8),
                    stop_signal: Signal::TERM,
                })
            );
            if held {
                step(
                    &mut sup,
                    5,
                    Some(at(true, 1, Some(1))),
                    vec![told(1, Some(1)), Leave],
                );
            } else {
                let limit = 4 + STOP_LIMIT.as_millis() as u64;
                step(&mut sup, limit - 1, None, vec![]);
                step(
                    &mut sup,
                    limit,
                    None,
                    vec![note(Note::LeftUnsettled), Leave],
                );
            }
        }
    }

    #[test]
    fn lines_without_a_queue_or_for_the_queue_are_refused_with_a_reason() {
        let mut sup = queued(1);
        step(
            &mut sup,
            0,
            Some(answers(vec![Said::Checkpoint(3)])),
            vec![Action::TellError {
                error: "checkpoint: the queue records the checkpoints (--queue)".into(),
                line: String::new(),
            }],
        );
        let mut plain = Supervisor::new(policy(Mode::HotStandby));
        drain(&mut plain);
        step(
            &mut plain,
            0,
            Some(answers(vec![Said::Checkpoint(3), Said::Done(1)])),
            vec![
                Action::Checkpoint(3),
                Action::TellError {
                    error: "done, retry: no queue (start handover with --queue)".into(),
                    line: String::new(),
                },
            ],
        );
    }
}

/// A supervisor whose service's health is checked, and a step of it.
fn checked(mode: Mode) -> Supervisor {
    let mut sup = Supervisor::new(Policy {
        health: true,
        ..policy(mode)
    });
    while sup.poll_action().is_some() {}
    sup
}

fn step(sup: &mut Supervisor, ms: u64, input: Input) -> Vec<Action> {
    sup.handle(Duration::from_millis(ms), input);
    std::iter::from_fn(|| sup.poll_action()).collect()
}

fn with_standbys(n: usize) -> Input {
    view(|v| {
        v.active = true;
        v.standbys = n;
    })
}

#[test]
fn an_unhealthy_active_steps_down_only_when_a_standby_can_take_over() {
    let mut sup = checked(Mode::ColdStandby);
    assert_eq!(step(&mut sup, 10, with_standbys(0)), vec![spawn()]);
    step(&mut sup, 10, Input::Spawned);
    assert_eq!(
        step(&mut sup, 20, Input::Ready("notify")),
        vec![
            Action::WatchHealth,
            note(Note::ServiceReady { via: "notify" }),
            NotifyReady
        ]
    );
    // Alone: kept, and said once.
    let kept = vec![note(Note::UnhealthyKept)];
    assert_eq!(step(&mut sup, 1_000, Input::Health(false)), kept);
    assert_eq!(step(&mut sup, 1_010, with_standbys(0)), vec![]);
    // Healthy again, then unhealthy again: said again.
    assert_eq!(step(&mut sup, 2_000, Input::Health(true)), vec![]);
    assert_eq!(step(&mut sup, 3_000, Input::Health(false)), kept);
    // A standby comes: the service is stopped, and the instance leaves.
    assert_eq!(
        step(&mut sup, 4_000, with_standbys(1)),
        vec![
            note(Note::SteppingDown("unhealthy")),
            Action::Signal(Signal::TERM)
        ]
    );
    assert_eq!(step(&mut sup, 4_100, exited(143)), vec![Leave]);
    let last = step(&mut sup, 4_110, Input::Left);
    assert_eq!(last, vec![Action::Exit(Exit::Unhealthy)]);
    assert_eq!(
        exit_code(&last),
        Some(1),
        "a restart policy starts it again"
    );
}

#[test]
fn an_unhealthy_active_with_a_standby_steps_down_at_the_verdict() {
    let mut sup = checked(Mode::HotStandby);
    step(&mut sup, 0, Input::Spawned);
    assert_eq!(
        step(&mut sup, 100, with_standbys(1)),
        vec![PublishRole {
            active: true,
            leader: None
        }]
    );
    assert_eq!(
        step(&mut sup, 1_000, Input::Health(false)),
        vec![
            note(Note::SteppingDown("unhealthy")),
            Action::Signal(Signal::TERM)
        ]
    );
}

#[test]
fn an_operator_steps_the_active_down_only_for_a_standby() {
    let mut sup = checked(Mode::ColdStandby);
    let refused = |why| vec![note(Note::StepDownRefused(why))];
    assert_eq!(
        step(&mut sup, 0, Input::StepDown),
        refused("not the active instance")
    );
    step(&mut sup, 10, with_standbys(0));
    step(&mut sup, 10, Input::Spawned);
    step(&mut sup, 20, Input::Ready("notify"));
    assert_eq!(
        step(&mut sup, 100, Input::StepDown),
        refused("no standby could take over")
    );
    step(&mut sup, 200, with_standbys(2));
    assert_eq!(
        step(&mut sup, 300, Input::StepDown),
        vec![
            note(Note::SteppingDown("asked")),
            Action::Signal(Signal::TERM)
        ]
    );
    assert_eq!(step(&mut sup, 400, exited(143)), vec![Leave]);
    let last = step(&mut sup, 410, Input::Left);
    assert_eq!(exit_code(&last), Some(0));
    let mut hand_over = checked(HAND_OVER);
    assert_eq!(
        step(&mut hand_over, 0, Input::StepDown),
        refused("hand-over: a newer instance takes over by starting")
    );
}

#[test]
fn an_unhealthy_hot_standby_stands_aside_until_healthy_again() {
    let mut sup = checked(Mode::HotStandby);
    let started = step(&mut sup, 0, Input::Spawned);
    assert!(started.contains(&Action::WatchHealth), "{started:?}");
    step(&mut sup, 10, standby());
    assert_eq!(
        step(&mut sup, 1_000, Input::Health(false)),
        vec![Action::Eligible(false)]
    );
    // Aside, it is no longer a standby; a verdict that does not change says nothing.
    assert_eq!(step(&mut sup, 1_010, view(|_| {})), vec![]);
    assert_eq!(step(&mut sup, 1_020, Input::Health(false)), vec![]);
    assert_eq!(
        step(&mut sup, 2_000, Input::Health(true)),
        vec![Action::Eligible(true)]
    );
    // Health is not checked in a cold standby's wait: no service runs.
    let mut cold = checked(Mode::ColdStandby);
    assert_eq!(step(&mut cold, 10, standby()), vec![NotifyReady]);
    assert_eq!(step(&mut cold, 20, Input::Health(false)), vec![]);
}
