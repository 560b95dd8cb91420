"""What only the Streamlit studio needs: its charts, the marks and diagram panels pages share (ui), and
the warm-up of a studio process."""
