fn main() -> std::process::ExitCode {
    match meter_gateway::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // `meter-gateway ... | head`: the reader has what it wanted.
        Err(e) if meter_gateway::cli::is_closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}
