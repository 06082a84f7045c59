//! Each run's draws are its own (`cellnets::random`). A draw that bypasses the lock (as
//! unit tests' do) could fall between a reseeding and its draw, so every draw here goes
//! through `random`, and every other draw in this test binary (tests/tests.rs) takes the
//! same lock (`common::torch_generator`, `cellnets::random::lock`).

use cellnets::random::{draw, draw_seeded, with_stream};
use tch::{Device, Kind, Tensor};

fn shuffle_then_noise() -> (Tensor, Tensor) {
    let order = draw(|| Tensor::randperm(50, (Kind::Int64, Device::Cpu)));
    let noise = draw(|| Tensor::rand([50], (Kind::Float, Device::Cpu)));
    (order, noise)
}

#[test]
fn a_streams_draws_do_not_depend_on_draws_in_other_threads_or_between_them() {
    let alone = with_stream(11, shuffle_then_noise);
    let crowded = std::thread::scope(|scope| {
        let others: Vec<_> = (0..3)
            .map(|other| {
                scope.spawn(move || {
                    with_stream(100 + other, || {
                        (0..200).for_each(|_| drop(shuffle_then_noise()))
                    })
                })
            })
            .collect();
        let mine: Vec<_> = (0..50)
            .map(|_| {
                // Draws outside any stream move the generator between mine.
                drop(draw(|| Tensor::rand([10], (Kind::Float, Device::Cpu))));
                with_stream(11, shuffle_then_noise)
            })
            .collect();
        others.into_iter().for_each(|other| other.join().unwrap());
        mine
    });
    for (order, noise) in crowded {
        assert!(order.equal(&alone.0) && noise.equal(&alone.1));
    }
}

#[test]
fn a_streams_first_draw_is_that_of_its_seed_and_later_ones_differ() {
    let expected = draw_seeded(5, || Tensor::randperm(20, (Kind::Int64, Device::Cpu)));
    let (first, second) = with_stream(5, || {
        let first = draw(|| Tensor::randperm(20, (Kind::Int64, Device::Cpu)));
        let second = draw(|| Tensor::randperm(20, (Kind::Int64, Device::Cpu)));
        (first, second)
    });
    assert!(first.equal(&expected));
    assert!(!second.equal(&first));
    let other_seed = with_stream(6, || {
        draw(|| ());
        draw(|| Tensor::randperm(20, (Kind::Int64, Device::Cpu)))
    });
    assert!(!other_seed.equal(&second));
}
