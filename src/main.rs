fn main() -> std::process::ExitCode {
    match meter_gateway::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `meter-gateway ... | head`: the reader has what it wanted.
        Err(e) if meter_gateway::cli::is_closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            // 2: input the command refuses; 1: anything else (README, "Exit status").
            std::process::ExitCode::from(meter_gateway::cli::Failure::of(&e).exit_code())
        }
    }
}
